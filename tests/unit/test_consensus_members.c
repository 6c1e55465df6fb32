/*
 * test_consensus_members.c - changing the configuration of a running
 * cluster (consensus/members.c invariants 4-7), driven by hand on the
 * in-memory cluster of px_harness.h: a learner added and promoted, the
 * refusals (one change at a time, one voter at a time, leader only),
 * nothing proposed above an uncommitted CONFIG, the quorum of the new
 * configuration in force from the next slot, a leader that removes itself
 * handing over without an election timeout, a planned transfer, a new
 * leader that recovered a CONFIG running phase 1 again under it, and a
 * CONFIG value that is not one refused at the acceptor.
 */
#include "px_harness.h"

static px_members mk(const uint32_t *voters, uint32_t nv,
                     const uint32_t *learners, uint32_t nl)
{
    px_members m;
    memset(&m, 0, sizeof m);
    for (uint32_t i = 0; i < nv; i++)
        m.voters[m.n_voters++] = voters[i];
    for (uint32_t i = 0; i < nl; i++)
        m.learners[m.n_learners++] = learners[i];
    return m;
}

/* Start node `id` (not one of the first ones) knowing configuration m. */
static void h_join(cluster *c, uint32_t id, const px_members *m)
{
    hnode *h = &c->n[id];
    h->id = id;
    h_opts(&h->opt, id, 0);
    h->opt.members = *m;
    h->members = *m;
    h_start(c, id, NULL);
    if (id > c->count)
        c->count = id;
}

static int h_change(cluster *c, uint32_t id, const px_members *m,
                    const char *context)
{
    px_event ev = {.type = PX_EV_CHANGE_MEMBERS};
    ev.u.change.members = *m;
    ev.u.change.context = (const uint8_t *)context;
    ev.u.change.context_len = context ? (uint32_t)strlen(context) : 0;
    ev.now_ms = c->now;
    px_output out;
    int rc = px_step(c->n[id].r, &ev, &out);
    if (rc == 0)
        h_output(c, &c->n[id], &out);
    if (rc == 0 && out.persist_id)
        h_step(c, id, (px_event){.type = PX_EV_PERSISTED,
                                 .u.persist_id = out.persist_id});
    return rc;
}

static int h_transfer(cluster *c, uint32_t id, uint32_t to)
{
    px_event ev = {.type = PX_EV_TRANSFER, .u.transfer_to = to};
    ev.now_ms = c->now;
    px_output out;
    int rc = px_step(c->n[id].r, &ev, &out);
    if (rc == 0)
        h_output(c, &c->n[id], &out);
    return rc;
}

static uint32_t h_leader(cluster *c)
{
    uint32_t found = 0;
    for (uint32_t id = 1; id <= c->count; id++)
        if (c->n[id].r && !c->n[id].down &&
            h_status(c, id).role == PX_LEADER) {
            assert_int_equal(found, 0);   /* one at a time here */
            found = id;
        }
    return found;
}

static bool same_members(const px_members *a, const px_members *b)
{
    if (a->n_voters != b->n_voters || a->n_learners != b->n_learners)
        return false;
    for (uint32_t i = 0; i < a->n_voters; i++)
        if (a->voters[i] != b->voters[i])
            return false;
    for (uint32_t i = 0; i < a->n_learners; i++)
        if (a->learners[i] != b->learners[i])
            return false;
    return true;
}

static uint64_t find_config_slot(const hnode *h)
{
    uint64_t found = 0;
    for (uint64_t s = 1; s <= h->applied && s < MAXLOG; s++)
        if (h->log[s].kind == PX_ENTRY_CONFIG)
            found = s;
    return found;
}

/* ------------------------------------------------------------------ tests */

static void test_add_learner_then_promote(void **state)
{
    (void)state;
    cluster *c = h_cluster(3, NULL);
    h_elect(c, 1);
    const uint32_t v3[] = {1, 2, 3}, v4[] = {1, 2, 3, 4}, l4[] = {4};
    px_members with_learner = mk(v3, 3, l4, 1);
    h_join(c, 4, &with_learner);
    assert_int_equal(h_change(c, 1, &with_learner, "4=127.0.0.1:7004"), 0);
    h_run(c);
    h_settle(c, 30);
    for (uint32_t id = 1; id <= 3; id++)
        assert_true(same_members(&c->n[id].members, &with_learner));
    /* the CONFIG entry carries the host's context */
    uint64_t s = find_config_slot(&c->n[2]);
    assert_true(s > 0);
    px_members m;
    const uint8_t *ctx;
    uint32_t ctx_len;
    assert_int_equal(px_config_decode(c->n[2].log[s].data, c->n[2].log[s].len,
                                      &m, &ctx, &ctx_len), 0);
    assert_int_equal(ctx_len, strlen("4=127.0.0.1:7004"));
    assert_memory_equal(ctx, "4=127.0.0.1:7004", ctx_len);
    /* the learner gets the log but never votes */
    for (uint64_t k = 1; k <= 5; k++) {
        h_propose(c, 1, 7, k, "w");
        h_run(c);
    }
    h_settle(c, 100);
    assert_int_equal(c->n[4].applied, c->n[1].applied);
    assert_int_equal(h_status(c, 4).role, PX_LEARNER);
    /* promoted: four voters, quorum three */
    px_members four = mk(v4, 4, NULL, 0);
    assert_int_equal(h_change(c, 1, &four, NULL), 0);
    h_run(c);
    h_settle(c, 30);
    assert_true(same_members(&c->n[4].members, &four));
    assert_int_equal(h_status(c, 4).role, PX_FOLLOWER);
    assert_int_equal(h_status(c, 1).config_slot, 0);
    /* with 2 and 3 cut off, leader 1 and voter 4 are not a quorum of 4 */
    c->n[2].cut = c->n[3].cut = true;
    uint64_t before = h_status(c, 1).commit_index;
    h_propose(c, 1, 7, 6, "needs three");
    h_run(c);
    c->now += 20;
    h_tick(c, 1);
    h_run(c);
    assert_int_equal(h_status(c, 1).commit_index, before);
    c->n[3].cut = false;
    h_settle(c, 200);
    assert_true(h_status(c, 1).commit_index > before);
    h_free(c);
}

static void test_changes_refused(void **state)
{
    (void)state;
    cluster *c = h_cluster(3, NULL);
    const uint32_t v3[] = {1, 2, 3}, v2[] = {1, 2}, v5[] = {1, 2, 3, 4, 5},
                   v4[] = {1, 2, 3, 4}, l4[] = {4};
    px_members cur = mk(v3, 3, NULL, 0), two = mk(v2, 2, NULL, 0),
               five = mk(v5, 5, NULL, 0), four = mk(v4, 4, NULL, 0),
               learner = mk(v3, 3, l4, 1), bad = mk(v3, 3, v3, 1);
    /* no leader yet */
    assert_int_equal(h_change(c, 1, &two, NULL), -EAGAIN);
    h_elect(c, 1);
    /* a follower refuses: ask the leader */
    assert_int_equal(h_change(c, 2, &two, NULL), -EAGAIN);
    assert_int_equal(h_transfer(c, 2, 3), -EAGAIN);
    /* the one in force, two voters at once, an invalid one */
    assert_int_equal(h_change(c, 1, &cur, NULL), -EINVAL);
    assert_int_equal(h_change(c, 1, &five, NULL), -EINVAL);
    assert_int_equal(h_change(c, 1, &bad, NULL), -EINVAL);
    assert_int_equal(h_transfer(c, 1, 1), -EINVAL);
    assert_int_equal(h_transfer(c, 1, 9), -EINVAL);
    /* one at a time: a second change waits for the first to commit */
    h_join(c, 4, &learner);
    c->n[2].cut = c->n[3].cut = true;       /* no votes for now */
    assert_int_equal(h_change(c, 1, &learner, NULL), 0);
    h_run(c);
    uint64_t slot = h_status(c, 1).config_slot;
    assert_true(slot > 0);
    assert_int_equal(h_change(c, 1, &four, NULL), -EBUSY);
    assert_int_equal(h_transfer(c, 1, 2), -EBUSY);
    c->n[2].cut = c->n[3].cut = false;
    h_settle(c, 100);
    assert_int_equal(h_status(c, 1).config_slot, 0);
    assert_int_equal(h_change(c, 1, &four, NULL), 0);
    h_run(c);
    h_settle(c, 30);
    assert_int_equal(h_status(c, 1).members.n_voters, 4);
    h_free(c);
}

/* Invariant 5: nothing is proposed above the leader's uncommitted CONFIG
 * (slots above it would lie under a configuration not yet known), and
 * requests that arrive meanwhile go into the first slot after it. */
static void test_nothing_above_an_uncommitted_config(void **state)
{
    (void)state;
    cluster *c = h_cluster(3, NULL);
    h_elect(c, 1);
    const uint32_t v3[] = {1, 2, 3}, l4[] = {4};
    px_members learner = mk(v3, 3, l4, 1);
    h_join(c, 4, &learner);
    c->n[2].cut = c->n[3].cut = true;
    int rc = h_change(c, 1, &learner, NULL);
    assert_int_equal(rc, 0);
    h_run(c);
    uint64_t slot = h_status(c, 1).config_slot;
    for (uint64_t k = 1; k <= 3; k++) {
        h_propose(c, 1, 5, k, "waits");
        h_run(c);
    }
    assert_int_equal(h_status(c, 1).slots_in_flight,
                     slot - h_status(c, 1).commit_index);
    assert_int_equal(h_status(c, 1).config_slot, slot);
    c->n[2].cut = c->n[3].cut = false;
    h_settle(c, 100);
    assert_true(c->n[1].applied > slot);
    for (uint64_t k = 1; k <= 3; k++) {
        bool found = false;
        for (uint64_t s = slot + 1; s <= c->n[1].applied; s++)
            found |= h_log_has(&c->n[1].log[s], 5, k);
        assert_true(found);
    }
    h_free(c);
}

/* Invariant 7: the leader removes itself; once the change commits it
 * hands over with TIMEOUT_NOW and a new leader is elected without any
 * election timeout passing; the removed node's messages are ignored. */
static void test_leader_removes_itself(void **state)
{
    (void)state;
    cluster *c = h_cluster(3, NULL);
    h_elect(c, 1);
    for (uint64_t k = 1; k <= 3; k++) {
        h_propose(c, 1, 3, k, "before");
        h_run(c);
    }
    const uint32_t v23[] = {2, 3};
    px_members without_1 = mk(v23, 2, NULL, 0);
    uint64_t t0 = c->now;
    assert_int_equal(h_change(c, 1, &without_1, "removed by 1"), 0);
    h_run(c);       /* commit, TIMEOUT_NOW, phase 1: no time passes */
    assert_int_equal(c->now, t0);
    assert_int_equal(h_stats(c, 1).transfers_started, 1);
    assert_int_equal(h_status(c, 1).role, PX_LEARNER);
    assert_false(h_status(c, 1).read_lease);
    uint32_t l = h_leader(c);
    assert_true(l == 2 || l == 3);
    assert_int_equal(h_stats(c, l).transfer_elections, 1);
    /* writes go on under {2, 3} */
    uint32_t other = l == 2 ? 3 : 2;
    h_propose(c, other, 3, 4, "after");
    h_run(c);
    h_settle(c, 30);
    bool found = false;
    for (uint64_t s = 1; s <= c->n[other].applied; s++)
        found |= h_log_has(&c->n[other].log[s], 3, 4);
    assert_true(found);
    /* node 1 knows it is out; what it still sends is dropped */
    assert_true(same_members(&c->n[1].members, &without_1));
    uint64_t ignored = h_stats(c, l).msgs_ignored;
    c->now += 1000;
    h_tick(c, 1);
    h_propose(c, 1, 3, 5, "from the removed node");
    h_run(c);
    assert_int_equal(h_leader(c), l);
    assert_true(h_stats(c, l).msgs_ignored >= ignored);
    h_free(c);
}

/* A planned transfer: no new proposals, the target catches up, gets
 * TIMEOUT_NOW and wins at once; the old leader's lease ends first. */
static void test_planned_transfer(void **state)
{
    (void)state;
    cluster *c = h_cluster(3, NULL);
    h_elect(c, 1);
    h_propose(c, 1, 4, 1, "x");
    h_run(c);
    h_settle(c, 20);
    assert_true(h_status(c, 1).read_lease);
    /* 3 falls behind */
    c->n[3].cut = true;
    h_propose(c, 1, 4, 2, "y");
    h_run(c);
    h_settle(c, 20);
    uint64_t t0 = c->now;
    assert_int_equal(h_transfer(c, 1, 3), 0);
    assert_int_equal(h_status(c, 1).transfer_to, 3);
    /* a request now waits: nothing new while handing over */
    uint64_t commit = h_status(c, 1).commit_index;
    h_propose(c, 1, 4, 3, "z");
    h_run(c);
    assert_int_equal(h_status(c, 1).slots_in_flight, 0);
    assert_int_equal(h_status(c, 1).commit_index, commit);
    /* 3 is back: it gets what it lacks, then TIMEOUT_NOW, and wins */
    c->n[3].cut = false;
    for (int i = 0; i < 10 && h_leader(c) != 3; i++) {
        c->now += 10;
        h_tick(c, 1);
        h_run(c);
    }
    assert_int_equal(h_leader(c), 3);
    assert_true(c->now - t0 < 100);   /* below the election timeout */
    assert_int_equal(h_stats(c, 3).transfer_elections, 1);
    assert_false(h_status(c, 1).read_lease);
    h_settle(c, 50);
    assert_int_equal(h_status(c, 1).leader_id, 3);
    bool found = false;
    for (uint64_t s = commit + 1; s <= c->n[3].applied; s++)
        found |= h_log_has(&c->n[3].log[s], 4, 3);
    assert_true(found);   /* the waiting request went to the new leader */
    h_free(c);
}

/* A transfer to a target that never catches up is given up. */
static void test_transfer_given_up(void **state)
{
    (void)state;
    cluster *c = h_cluster(3, NULL);
    h_elect(c, 1);
    c->n[3].cut = true;
    h_propose(c, 1, 4, 1, "x");
    h_run(c);
    assert_int_equal(h_transfer(c, 1, 3), 0);
    h_settle(c, 200);
    assert_int_equal(h_status(c, 1).role, PX_LEADER);
    assert_int_equal(h_status(c, 1).transfer_to, 0);
    assert_int_equal(h_stats(c, 1).transfers_given_up, 1);
    h_propose(c, 1, 4, 2, "y");
    h_run(c);
    h_settle(c, 20);
    assert_true(h_log_has(&c->n[2].log[c->n[2].applied], 4, 2) ||
                h_log_has(&c->n[2].log[c->n[2].applied - 1], 4, 2));
    h_free(c);
}

/* Invariant 6: leader 1 got its CONFIG (adding voter 4) accepted by 2
 * only, then died.  Node 2's phase 1 recovers the CONFIG: it re-proposes
 * up to that slot, and once it is committed runs phase 1 again, under
 * the four-voter configuration. */
/* The jump in time below stands for node 2 waiting out its timeout while
 * running (only the timers the test names fire), not for a stalled host
 * (replica.c invariant 5). */
static void tweak_no_stall(px_options *o)
{
    o->stall_ms = 0;
}

static void test_recovered_config_reelects(void **state)
{
    (void)state;
    cluster *c = h_cluster(3, tweak_no_stall);
    h_elect(c, 1);
    const uint32_t v4[] = {1, 2, 3, 4};
    px_members four = mk(v4, 4, NULL, 0);
    h_join(c, 4, &four);
    c->n[3].cut = true;
    assert_int_equal(h_change(c, 1, &four, NULL), 0);
    uint64_t slot = h_status(c, 1).config_slot;
    h_deliver(c, PX_MSG_ACCEPT, 1, 2);      /* 2 accepts the CONFIG */
    h_drop(c, 0, 0, 0);                     /* nothing else arrives */
    c->n[1].down = true;
    c->n[3].cut = false;
    c->n[4].cut = false;
    uint64_t started = h_stats(c, 2).elections_started;
    h_tick(c, 2);
    c->now += 1000;
    h_tick(c, 2);
    h_run(c);
    for (int i = 0; i < 50 && h_status(c, 2).role != PX_LEADER; i++) {
        c->now += 10;
        h_tick(c, 2);
        h_tick(c, 3);
        h_tick(c, 4);
        h_run(c);
    }
    assert_int_equal(h_status(c, 2).role, PX_LEADER);
    /* two phase 1 rounds: one under {1,2,3}, one under {1,2,3,4} */
    assert_int_equal(h_stats(c, 2).elections_started, started + 2);
    assert_int_equal(h_status(c, 2).members.n_voters, 4);
    assert_true(h_status(c, 2).commit_index >= slot);
    assert_int_equal(c->n[2].log[slot].kind, PX_ENTRY_CONFIG);
    /* the new configuration's quorum (3 of 4: 2, 3, 4) commits */
    h_propose(c, 2, 6, 1, "z");
    h_run(c);
    h_settle(c, 30);
    assert_true(h_log_has(&c->n[4].log[c->n[4].applied], 6, 1));
    h_free(c);
}

/* A transfer PREPARE overrides stickiness only at voters that follow the
 * ballot it names: a node cannot depose a live leader by claiming a
 * handover that leader never made. */
static void test_transfer_prepare_needs_that_leader(void **state)
{
    (void)state;
    cluster *c = h_cluster(3, NULL);
    h_elect(c, 1);
    px_status st = h_status(c, 2);
    px_ballot mine = {st.promise.round + 1, 3};
    px_ballot other = {st.ballot.round + 7, 1};   /* not the one followed */
    px_msg m = {.type = PX_MSG_PREPARE, .from = 3, .to = 2, .ballot = mine,
                .slot = st.commit_index + 1, .aux = 3, .aux_ballot = other};
    uint64_t ignored = h_stats(c, 2).msgs_ignored;
    h_step(c, 2, (px_event){.type = PX_EV_RECEIVE, .u.msg = &m});
    assert_int_equal(h_stats(c, 2).msgs_ignored, ignored + 1);
    assert_int_equal(h_count(c, PX_MSG_PROMISE, 2, 3), 0);
    assert_int_equal(px_ballot_cmp(h_status(c, 2).promise, st.promise), 0);
    /* naming the ballot it follows, it is answered */
    m.aux_ballot = st.ballot;
    h_step(c, 2, (px_event){.type = PX_EV_RECEIVE, .u.msg = &m});
    assert_int_equal(h_count(c, PX_MSG_PROMISE, 2, 3), 1);
    h_free(c);
}

/* An ACCEPT whose CONFIG value does not decode is dropped whole. */
static void test_bad_config_value_refused(void **state)
{
    (void)state;
    cluster *c = h_cluster(3, NULL);
    h_elect(c, 1);
    px_status st = h_status(c, 1);
    uint8_t junk[12] = {5, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0};
    px_entry e = {.slot = st.commit_index + 1, .ballot = st.ballot,
                  .kind = PX_ENTRY_CONFIG, .len = sizeof junk, .data = junk};
    px_msg m = {.type = PX_MSG_ACCEPT, .from = 1, .to = 2, .ballot = st.ballot,
                .commit = st.commit_index, .n_entries = 1, .entries = &e};
    uint64_t ignored = h_stats(c, 2).msgs_ignored;
    h_step(c, 2, (px_event){.type = PX_EV_RECEIVE, .u.msg = &m});
    assert_int_equal(h_stats(c, 2).msgs_ignored, ignored + 1);
    assert_int_equal(h_count(c, PX_MSG_ACCEPTED, 2, 1), 0);
    h_free(c);
}

/* Invariant 8: the CONFIG that promoted learner 3 committed on the votes
 * of 1 and 2 before 3 heard of it, and leader 1 is gone.  The
 * other voter needs 3's promise; 3, a learner in its own view, answers
 * it because the candidate committed more, and learns its promotion from
 * the new leader. */
static void test_promoted_learner_behind_answers_prepare(void **state)
{
    (void)state;
    cluster *c = h_cluster(2, NULL);
    h_elect(c, 1);
    const uint32_t v2[] = {1, 2}, v3[] = {1, 2, 3}, l3[] = {3};
    px_members with = mk(v2, 2, l3, 1), three = mk(v3, 3, NULL, 0);
    h_join(c, 3, &with);
    assert_int_equal(h_change(c, 1, &with, NULL), 0);
    h_run(c);
    h_settle(c, 30);
    assert_true(same_members(&c->n[3].members, &with));
    assert_int_equal(h_change(c, 1, &three, NULL), 0);
    h_deliver(c, PX_MSG_ACCEPT, 1, 2);     /* 3 does not even get it */
    h_drop(c, 0, 1, 3);
    /* 2's vote commits it at 1 (old configuration); only 2 hears so */
    for (int k = 0; k < 20; k++) {
        c->now += 10;
        h_tick(c, 1);
        h_tick(c, 2);
        h_drop(c, 0, 1, 3);
        h_drop(c, 0, 3, 0);
        h_deliver(c, 0, 1, 2);
        h_deliver(c, 0, 2, 1);
    }
    assert_true(same_members(&c->n[1].members, &three));
    assert_true(same_members(&c->n[2].members, &three));
    assert_true(same_members(&c->n[3].members, &with));
    assert_int_equal(h_status(c, 3).role, PX_LEARNER);
    h_drop(c, 0, 0, 0);
    c->n[1].down = c->n[1].cut = true;
    h_settle(c, 5000);
    assert_int_equal(h_leader(c), 2);
    assert_true(same_members(&c->n[3].members, &three));
    assert_int_equal(h_status(c, 3).role, PX_FOLLOWER);
    h_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_learner_then_promote),
        cmocka_unit_test(test_changes_refused),
        cmocka_unit_test(test_nothing_above_an_uncommitted_config),
        cmocka_unit_test(test_leader_removes_itself),
        cmocka_unit_test(test_planned_transfer),
        cmocka_unit_test(test_transfer_given_up),
        cmocka_unit_test(test_recovered_config_reelects),
        cmocka_unit_test(test_transfer_prepare_needs_that_leader),
        cmocka_unit_test(test_bad_config_value_refused),
        cmocka_unit_test(test_promoted_learner_behind_answers_prepare),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
