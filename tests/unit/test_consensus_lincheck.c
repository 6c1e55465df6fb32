/*
 * test_consensus_lincheck.c - verdicts of the simulator's linearizability
 * checker (tests/sim/lincheck.c) on hand-made histories: linearizable ones
 * must pass, and each classic anomaly (stale read, lost append, read of a
 * value never written, reads inverted around a write, double-applied
 * append) must be caught.  The checker is compiled in directly so the
 * simulator's sources need no library of their own.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "../sim/lincheck.c"

#define S(x) (const uint8_t *)(x), (uint32_t)strlen(x)

static lin_op put(uint32_t key, const char *v, uint64_t inv, uint64_t ret)
{
    return (lin_op){.key = key, .type = LIN_PUT, .input = (const uint8_t *)v,
                    .input_len = (uint32_t)strlen(v), .invoke_ms = inv,
                    .return_ms = ret};
}

static lin_op app(uint32_t key, const char *v, uint64_t inv, uint64_t ret)
{
    lin_op op = put(key, v, inv, ret);
    op.type = LIN_APPEND;
    return op;
}

static lin_op del(uint32_t key, int32_t result, uint64_t inv, uint64_t ret)
{
    return (lin_op){.key = key, .type = LIN_DEL, .result = result,
                    .invoke_ms = inv, .return_ms = ret};
}

static lin_op get(uint32_t key, const char *v, uint64_t inv, uint64_t ret)
{
    lin_op op = {.key = key, .type = LIN_GET, .invoke_ms = inv,
                 .return_ms = ret};
    if (v) {
        op.found = true;
        op.output = (const uint8_t *)v;
        op.output_len = (uint32_t)strlen(v);
    }
    return op;
}

static int check(const lin_op *ops, size_t n)
{
    lin_report rep;
    return lin_check(ops, n, 0, &rep);
}

static void test_empty_history(void **state)
{
    (void)state;
    assert_int_equal(check(NULL, 0), LIN_OK);
}

static void test_sequential_ok(void **state)
{
    (void)state;
    lin_op h[] = {
        get(1, NULL, 0, 1),
        put(1, "a", 2, 3),
        get(1, "a", 4, 5),
        app(1, "b", 6, 7),
        get(1, "ab", 8, 9),
        del(1, 0, 10, 11),
        del(1, -ENOENT, 12, 13),
        get(1, NULL, 14, 15),
        app(1, "c", 16, 17),
        get(1, "c", 18, 19),
    };
    assert_int_equal(check(h, sizeof(h) / sizeof(h[0])), LIN_OK);
}

static void test_concurrent_ok(void **state)
{
    (void)state;
    /* a read overlapping a write may see either value */
    lin_op h1[] = {put(1, "x", 0, 10), put(1, "y", 20, 40),
                   get(1, "x", 25, 30), get(1, "y", 31, 50)};
    assert_int_equal(check(h1, 4), LIN_OK);
    lin_op h2[] = {put(1, "x", 0, 10), put(1, "y", 20, 40),
                   get(1, "y", 21, 22), get(1, "y", 41, 50)};
    assert_int_equal(check(h2, 4), LIN_OK);
    /* two concurrent appends may land in either order */
    lin_op h3[] = {app(2, "a", 0, 100), app(2, "b", 5, 90),
                   get(2, "ba", 101, 102)};
    assert_int_equal(check(h3, 3), LIN_OK);
    /* keys are independent */
    lin_op h4[] = {put(1, "x", 0, 1), put(2, "y", 2, 3), get(1, "x", 4, 5),
                   get(2, "y", 4, 5), del(2, 0, 6, 7), get(1, "x", 8, 9)};
    assert_int_equal(check(h4, 6), LIN_OK);
}

static void test_pending_write_may_apply_or_not(void **state)
{
    (void)state;
    lin_op h1[] = {put(1, "x", 0, 1), put(1, "y", 2, LIN_RETURN_PENDING),
                   get(1, "y", 10, 11)};
    assert_int_equal(check(h1, 3), LIN_OK);
    lin_op h2[] = {put(1, "x", 0, 1), put(1, "y", 2, LIN_RETURN_PENDING),
                   get(1, "x", 10, 11)};
    assert_int_equal(check(h2, 3), LIN_OK);
    /* but once seen, a pending write cannot be un-applied */
    lin_op h3[] = {put(1, "x", 0, 1), put(1, "y", 2, LIN_RETURN_PENDING),
                   get(1, "y", 10, 11), get(1, "x", 12, 13)};
    assert_int_equal(check(h3, 4), LIN_VIOLATION);
}

static void test_stale_read_after_completed_write(void **state)
{
    (void)state;
    lin_op h[] = {put(1, "old", 0, 1), put(1, "new", 2, 3),
                  get(1, "old", 4, 5)};
    lin_report rep;
    assert_int_equal(lin_check(h, 3, 0, &rep), LIN_VIOLATION);
    assert_int_equal(rep.bad_key, 1);
}

static void test_lost_append(void **state)
{
    (void)state;
    lin_op h[] = {app(3, "a", 0, 1), app(3, "b", 2, 3), get(3, "a", 4, 5)};
    assert_int_equal(check(h, 3), LIN_VIOLATION);
    /* concurrent appends: one of them missing is still a loss */
    lin_op h2[] = {app(3, "a", 0, 10), app(3, "b", 0, 10),
                   get(3, "b", 11, 12)};
    assert_int_equal(check(h2, 3), LIN_VIOLATION);
}

static void test_double_applied_append(void **state)
{
    (void)state;
    lin_op h[] = {app(4, "a", 0, 1), get(4, "aa", 2, 3)};
    assert_int_equal(check(h, 2), LIN_VIOLATION);
}

static void test_read_of_never_written_value(void **state)
{
    (void)state;
    lin_op h[] = {put(1, "x", 0, 10), get(1, "z", 5, 6)};
    assert_int_equal(check(h, 2), LIN_VIOLATION);
    lin_op h2[] = {get(2, "ghost", 0, 1)};
    assert_int_equal(check(h2, 1), LIN_VIOLATION);
}

static void test_reads_inverted_around_write(void **state)
{
    (void)state;
    /* both reads overlap the write, but the first (completed before the
     * second began) saw the new value and the second the old one */
    lin_op h[] = {put(1, "x", 0, 1), put(1, "y", 10, 100),
                  get(1, "y", 20, 30), get(1, "x", 40, 50)};
    assert_int_equal(check(h, 4), LIN_VIOLATION);
}

static void test_delete_results_checked(void **state)
{
    (void)state;
    lin_op h1[] = {del(1, 0, 0, 1)};               /* deleted a ghost */
    assert_int_equal(check(h1, 1), LIN_VIOLATION);
    lin_op h2[] = {put(1, "x", 0, 1), del(1, -ENOENT, 2, 3)};
    assert_int_equal(check(h2, 2), LIN_VIOLATION);
    lin_op h3[] = {put(1, "x", 0, 1), del(1, 0, 2, 10), del(1, 0, 3, 9)};
    assert_int_equal(check(h3, 3), LIN_VIOLATION); /* both cannot win */
}

static void test_bad_input(void **state)
{
    (void)state;
    lin_op h[] = {put(1, "x", 5, 4)};
    assert_int_equal(check(h, 1), -EINVAL);
    lin_op h2[] = {put(1, "x", 0, 1)};
    h2[0].type = 9;
    assert_int_equal(check(h2, 1), -EINVAL);
}

static void test_budget_gives_undecided(void **state)
{
    (void)state;
    /* 24 mutually concurrent appends of distinct values then a read of an
     * impossible value: the search must give up, not hang */
    enum { N = 24 };
    lin_op h[N + 1];
    static const char *vals[N] = {"a", "b", "c", "d", "e", "f", "g", "h",
                                  "i", "j", "k", "l", "m", "n", "o", "p",
                                  "q", "r", "s", "t", "u", "v", "w", "x"};
    for (int i = 0; i < N; i++)
        h[i] = app(7, vals[i], 0, 1000);
    h[N] = get(7, "zz", 1001, 1002);
    lin_report rep;
    assert_int_equal(lin_check(h, N + 1, 5000, &rep), LIN_UNDECIDED);
    assert_true(rep.steps <= 5000);
    /* a violation on another key still wins over undecided */
    lin_op h2[N + 2];
    memcpy(h2, h, sizeof(h));
    h2[N + 1] = get(8, "ghost", 0, 1);
    assert_int_equal(lin_check(h2, N + 2, 5000, &rep), LIN_VIOLATION);
    assert_int_equal(rep.bad_key, 8);
}

static void test_long_linearizable_history(void **state)
{
    (void)state;
    /* 3 clients, overlapping windows, 300 ops on 2 keys */
    enum { N = 300 };
    static lin_op h[N];
    static char vals[N][8];
    static char reads[N][64];
    char cur[2][64] = {"", ""};
    for (int i = 0; i < N; i++) {
        uint32_t key = (uint32_t)(i % 2);
        uint64_t t = (uint64_t)i * 10;
        snprintf(vals[i], sizeof(vals[i]), "%d,", i % 10);
        if (i % 3 == 0) {
            h[i] = put(key, vals[i], t, t + 15);
            strcpy(cur[key], vals[i]);
        } else if (i % 3 == 1) {
            h[i] = app(key, vals[i], t, t + 15);
            strcat(cur[key], vals[i]);
        } else {
            strcpy(reads[i], cur[key]);
            h[i] = get(key, reads[i], t + 5, t + 25);
        }
    }
    lin_report rep;
    assert_int_equal(lin_check(h, N, 0, &rep), LIN_OK);
    assert_int_equal(rep.keys, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_history),
        cmocka_unit_test(test_sequential_ok),
        cmocka_unit_test(test_concurrent_ok),
        cmocka_unit_test(test_pending_write_may_apply_or_not),
        cmocka_unit_test(test_stale_read_after_completed_write),
        cmocka_unit_test(test_lost_append),
        cmocka_unit_test(test_double_applied_append),
        cmocka_unit_test(test_read_of_never_written_value),
        cmocka_unit_test(test_reads_inverted_around_write),
        cmocka_unit_test(test_delete_results_checked),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_budget_gives_undecided),
        cmocka_unit_test(test_long_linearizable_history),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
