/*
 * test_net_outbox.c - messages held until a persist is durable
 * (net/outbox.c): FIFO release by tag, the bound, which messages vouch,
 * and ACCEPTED merging.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../../net/outbox.h"

typedef struct sent {
    px_msg msgs[64];
    uint32_t n;
} sent;

static void record(void *arg, const px_msg *m)
{
    sent *s = arg;
    assert_true(s->n < 64);
    s->msgs[s->n] = *m;
    s->msgs[s->n].entries = NULL;   /* freed after the callback */
    s->msgs[s->n].requests = NULL;
    s->n++;
}

static px_msg accepted(uint32_t to, uint64_t round, uint64_t slot,
                       uint64_t claim)
{
    return (px_msg){ .type = PX_MSG_ACCEPTED, .from = 2, .to = to,
                     .ballot = { round, to }, .slot = slot, .aux = claim + 1 };
}

static void test_release_in_order_by_tag(void **state)
{
    (void)state;
    outbox o;
    outbox_init(&o, 16);
    px_msg a = { .type = PX_MSG_PROMISE, .from = 2, .to = 1, .slot = 1 };
    px_msg b = { .type = PX_MSG_REJECT, .from = 2, .to = 3, .slot = 2 };
    px_msg c = { .type = PX_MSG_HEARTBEAT_ACK, .from = 2, .to = 1, .slot = 3 };
    assert_int_equal(outbox_hold(&o, &a, 5), 0);
    assert_int_equal(outbox_hold(&o, &b, 7), 0);
    assert_int_equal(outbox_hold(&o, &c, 6), 0);
    sent s = { .n = 0 };
    outbox_release(&o, 4, record, &s);
    assert_int_equal(s.n, 0);
    outbox_release(&o, 6, record, &s);
    /* b (tag 7) blocks c (tag 6) behind it: FIFO */
    assert_int_equal(s.n, 1);
    assert_int_equal(s.msgs[0].slot, 1);
    outbox_release(&o, 7, record, &s);
    assert_int_equal(s.n, 3);
    assert_int_equal(s.msgs[1].slot, 2);
    assert_int_equal(s.msgs[2].slot, 3);
    assert_int_equal(o.count, 0);
    outbox_free(&o);
}

static void test_bound_drops_and_counts(void **state)
{
    (void)state;
    outbox o;
    outbox_init(&o, 300);   /* grows 256 -> 300, then refuses */
    px_msg m = { .type = PX_MSG_PROMISE, .from = 2, .to = 1 };
    for (uint32_t i = 0; i < 300; i++) {
        m.slot = i;
        assert_int_equal(outbox_hold(&o, &m, i + 1), 0);
    }
    assert_int_equal(outbox_hold(&o, &m, 1000), -ENOBUFS);
    assert_int_equal(o.dropped, 1);
    assert_int_equal(o.count, 300);
    sent s = { .n = 0 };
    outbox_release(&o, 40, record, &s);
    assert_int_equal(s.n, 40);
    for (uint32_t i = 0; i < 40; i++)
        assert_int_equal(s.msgs[i].slot, i);
    outbox_free(&o);
}

static void test_vouching_kinds(void **state)
{
    (void)state;
    static const uint8_t vouch[] = { PX_MSG_PROMISE, PX_MSG_ACCEPTED,
                                     PX_MSG_REJECT, PX_MSG_HEARTBEAT_ACK };
    for (uint8_t t = PX_MSG_PREPARE; t < PX_MSG_TYPE_COUNT; t++) {
        px_msg m = { .type = t };
        bool want = memchr(vouch, t, sizeof vouch) != NULL;
        assert_int_equal(outbox_vouches(&m), want);
    }
}

static void test_accepted_merges(void **state)
{
    (void)state;
    outbox o;
    outbox_init(&o, 16);
    px_msg p = { .type = PX_MSG_PROMISE, .from = 2, .to = 3, .slot = 99 };
    px_msg a1 = accepted(1, 4, 10, 10);
    px_msg a2 = accepted(1, 4, 12, 12);
    px_msg other_leader = accepted(3, 4, 12, 12);
    px_msg old_ballot = accepted(1, 3, 13, 13);
    assert_int_equal(outbox_hold(&o, &a1, 5), 0);
    assert_int_equal(outbox_hold(&o, &p, 5), 0);
    assert_int_equal(outbox_hold(&o, &a2, 6), 0);     /* replaces a1 */
    assert_int_equal(outbox_hold(&o, &other_leader, 6), 0);
    assert_int_equal(outbox_hold(&o, &old_ballot, 6), 0);
    assert_int_equal(o.count, 4);
    assert_int_equal(o.superseded, 1);
    /* a weaker claim never replaces a stronger one */
    px_msg weaker = accepted(1, 3, 11, 11);
    assert_int_equal(outbox_hold(&o, &weaker, 6), 0);
    assert_int_equal(o.count, 5);
    sent s = { .n = 0 };
    outbox_release(&o, 5, record, &s);
    assert_int_equal(s.n, 0);   /* a1's place now waits for a2's tag */
    outbox_release(&o, 6, record, &s);
    assert_int_equal(s.n, 5);
    assert_int_equal(s.msgs[0].type, PX_MSG_ACCEPTED);
    assert_int_equal(s.msgs[0].to, 1);
    assert_int_equal(s.msgs[0].aux, 13);
    assert_int_equal(s.msgs[0].slot, 12);
    assert_int_equal(s.msgs[1].type, PX_MSG_PROMISE);
    assert_int_equal(s.msgs[2].to, 3);
    assert_int_equal(s.msgs[3].ballot.round, 3);
    assert_int_equal(s.msgs[4].slot, 11);
    outbox_free(&o);
}

static void test_free_with_held_messages(void **state)
{
    (void)state;
    outbox o;
    outbox_init(&o, 16);
    px_msg m = { .type = PX_MSG_PROMISE, .from = 2, .to = 1 };
    for (int i = 0; i < 10; i++)
        assert_int_equal(outbox_hold(&o, &m, 100), 0);
    outbox_free(&o);   /* LeakSanitizer checks the copies went too */
    assert_int_equal(o.count, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_release_in_order_by_tag),
        cmocka_unit_test(test_bound_drops_and_counts),
        cmocka_unit_test(test_vouching_kinds),
        cmocka_unit_test(test_accepted_merges),
        cmocka_unit_test(test_free_with_held_messages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
