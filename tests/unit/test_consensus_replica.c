/*
 * test_consensus_replica.c - the Multi-Paxos replica driven by hand: a
 * tiny in-memory cluster (durable store per node, a FIFO network the test
 * delivers, drops or cuts by hand, virtual time) and one test per rule of
 * consensus/: election, commit after PERSISTED, phase 1 recovery with NOOP
 * hole filling, stale ballots, stickiness, forwarding, batching with a
 * full window, the follower commit rule, snapshots, read index, restart
 * ballots, malformed messages and a seeded chaos run checking agreement.
 */
#include "px_harness.h"

/* ---------------------------------------------------------------- tests */

static void test_single_voter(void **state)
{
    (void)state;
    cluster *c = h_cluster(1, NULL);
    h_tick(c, 1);
    assert_int_equal(h_status(c, 1).role, PX_LEADER);
    assert_int_equal(c->n[1].applied, 1); /* its NOOP */
    assert_int_equal(c->n[1].log[1].kind, PX_ENTRY_NOOP);
    assert_int_equal(c->n[1].log[1].time_ms, c->now);
    c->n[1].hold = true;
    h_propose(c, 1, 5, 1, "put a");
    assert_int_equal(c->n[1].applied, 1); /* not before PERSISTED */
    h_release(c, 1);
    assert_int_equal(c->n[1].applied, 2);
    assert_true(h_log_has(&c->n[1].log[2], 5, 1));
    /* read index: immediate in a single-voter cluster */
    h_step(c, 1, (px_event){.type = PX_EV_READ_INDEX, .u.read_token = 9});
    assert_int_equal(c->n[1].n_reads, 1);
    assert_int_equal(c->n[1].reads[0].read_token, 9);
    assert_int_equal(c->n[1].reads[0].index, 2);
    assert_int_equal(c->n[1].reads[0].status, 0);
    h_free(c);
}

/* Every batch to every follower at once (thrifty phase 2 off): the tests
 * below count one ACCEPT per follower. */
static void tweak_eager(px_options *o)
{
    o->thrifty = false;
}

static void test_three_node_commit_after_persist(void **state)
{
    (void)state;
    cluster *c = h_cluster(3, tweak_eager);
    h_elect(c, 1);
    for (uint32_t id = 1; id <= 3; id++) {
        assert_int_equal(c->n[id].applied, 1);
        assert_int_equal(h_status(c, id).leader_id, 1);
    }
    c->n[1].hold = true;
    h_propose(c, 1, 7, 1, "x");
    assert_int_equal(h_count(c, PX_MSG_ACCEPT, 1, 0), 2);
    h_drop(c, PX_MSG_ACCEPT, 1, 3);
    h_deliver(c, PX_MSG_ACCEPT, 1, 2);
    h_deliver(c, PX_MSG_ACCEPTED, 2, 1);
    /* one follower + the leader's own, not yet durable vote: no quorum */
    assert_int_equal(c->n[1].applied, 1);
    h_release(c, 1);
    assert_int_equal(c->n[1].applied, 2);
    c->n[1].hold = false;
    h_run(c);
    /* node 3 missed the ACCEPT: it learns from the commit index */
    c->now += 100;
    h_tick(c, 1);
    h_run(c);
    for (uint32_t id = 1; id <= 3; id++) {
        assert_int_equal(c->n[id].applied, 2);
        assert_true(h_log_has(&c->n[id].log[2], 7, 1));
    }
    h_free(c);
}

static void test_recovery_and_noop_fill(void **state)
{
    (void)state;
    cluster *c = h_cluster(3, tweak_eager);
    h_elect(c, 1);
    h_propose(c, 1, 1, 1, "A"); /* slot 2: nobody else gets it */
    assert_int_equal(h_drop(c, PX_MSG_ACCEPT, 1, 0), 2);
    uint64_t time_b = c->now;
    h_propose(c, 1, 2, 1, "B"); /* slot 3: only node 2 accepts it */
    h_drop(c, PX_MSG_ACCEPT, 1, 3);
    h_deliver(c, PX_MSG_ACCEPT, 1, 2);
    h_drop(c, 0, 0, 0);
    c->n[1].down = true;
    /* node 3 runs on time (node 2 only when a message comes) until it
     * leads: a jump in time would be a stall (replica.c invariant 5) */
    for (int i = 0; i < 300 && h_status(c, 3).role != PX_LEADER; i++) {
        c->now += 10;
        h_tick(c, 3);
        h_run(c);
    }
    assert_int_equal(h_status(c, 3).role, PX_LEADER);
    c->now += 20;
    h_tick(c, 3);
    h_run(c);
    for (uint32_t id = 2; id <= 3; id++) {
        assert_true(c->n[id].applied >= 3);
        assert_int_equal(c->n[id].log[2].kind, PX_ENTRY_NOOP);
        assert_true(h_log_has(&c->n[id].log[3], 2, 1));
        /* the re-proposal keeps the original value and time */
        assert_int_equal(c->n[id].log[3].time_ms, time_b);
    }
    /* node 1 comes back: it learns the chosen values, not its own A */
    h_restart(c, 1);
    c->now += 20;
    h_tick(c, 3);
    h_run(c);
    c->now += 20;
    h_tick(c, 3);
    h_run(c);
    assert_true(c->n[1].applied >= 3);
    assert_int_equal(c->n[1].log[2].kind, PX_ENTRY_NOOP);
    h_free(c);
}

static void test_stale_ballot_rejected(void **state)
{
    (void)state;
    cluster *c = h_cluster(3, NULL);
    px_destroy(c->n[3].r);
    px_restore rs = {.promise = {5, 1}};
    h_start(c, 3, &rs);
    px_entry e = {.slot = 1, .kind = PX_ENTRY_NOOP};
    px_msg m = {.type = PX_MSG_ACCEPT, .from = 2, .to = 3, .ballot = {3, 2},
                .n_entries = 1, .entries = &e};
    h_step(c, 3, (px_event){.type = PX_EV_RECEIVE, .u.msg = &m});
    assert_int_equal(c->n[3].n_acc, 0);
    assert_int_equal(h_count(c, PX_MSG_REJECT, 3, 2), 1);
    assert_int_equal(c->q[0]->aux_ballot.round, 5);
    assert_int_equal(c->q[0]->aux_ballot.node_id, 1);
    m.type = PX_MSG_PREPARE;
    m.n_entries = 0;
    m.entries = NULL;
    m.ballot = (px_ballot){4, 2};
    h_step(c, 3, (px_event){.type = PX_EV_RECEIVE, .u.msg = &m});
    assert_int_equal(h_count(c, PX_MSG_REJECT, 3, 2), 2);
    assert_int_equal(h_stats(c, 3).msgs_ignored, 2);
    assert_int_equal(h_status(c, 3).promise.round, 5);
    /* a deposed leader that hears the REJECT steps down */
    h_free(c);
    c = h_cluster(3, NULL);
    h_elect(c, 1);
    px_msg rej = {.type = PX_MSG_REJECT, .from = 2, .to = 1,
                  .ballot = h_status(c, 1).ballot, .aux_ballot = {50, 3}};
    h_step(c, 1, (px_event){.type = PX_EV_RECEIVE, .u.msg = &rej});
    assert_int_not_equal(h_status(c, 1).role, PX_LEADER);
    h_free(c);
}

static void test_leader_stickiness(void **state)
{
    (void)state;
    cluster *c = h_cluster(3, NULL);
    h_elect(c, 1);
    px_ballot b = h_status(c, 1).ballot;
    c->n[3].cut = true;
    for (int i = 0; i < 200; i++) { /* 2 s of partition */
        c->now += 10;
        for (uint32_t id = 1; id <= 3; id++)
            h_tick(c, id);
        h_run(c);
    }
    assert_true(h_stats(c, 3).elections_started > 0);
    c->n[3].cut = false;
    for (int i = 0; i < 100; i++) {
        c->now += 10;
        for (uint32_t id = 1; id <= 3; id++)
            h_tick(c, id);
        h_run(c);
    }
    assert_int_equal(h_status(c, 1).role, PX_LEADER);
    assert_int_equal(px_ballot_cmp(h_status(c, 1).ballot, b), 0);
    assert_int_equal(h_status(c, 3).leader_id, 1);
    assert_int_equal(px_ballot_cmp(h_status(c, 3).promise, b), 0);
    assert_int_equal(h_stats(c, 2).leader_changes, 1);
    h_free(c);
}

/* replica.c invariant 5: the whole cluster is not scheduled for 1.5 s
 * (a machine loaded by another program): nobody heard anybody meanwhile.
 * The followers wake first and do not count the time lost against their
 * leader, so they do not campaign at once; nor does the leader count it
 * against its quorum contact, so it does not step down.  Without the invariant node 2 campaigns on waking, node 3
 * grants (its leader was silent for longer than the stickiness window)
 * and node 1 steps down on its first tick. */
static void test_a_stalled_cluster_keeps_its_leader(void **state)
{
    (void)state;
    cluster *c = h_cluster(3, NULL);
    h_elect(c, 1);
    h_settle(c, 200);
    px_ballot b = h_status(c, 1).ballot;
    uint64_t started = h_stats(c, 2).elections_started +
                       h_stats(c, 3).elections_started;
    c->now += 1500;                 /* nobody runs */
    h_tick(c, 2);                   /* the followers wake first */
    h_run(c);
    h_tick(c, 3);
    h_run(c);
    c->now += 5;
    h_tick(c, 1);                   /* then the leader */
    h_run(c);
    h_settle(c, 1000);
    assert_int_equal(h_status(c, 1).role, PX_LEADER);
    assert_int_equal(px_ballot_cmp(h_status(c, 1).ballot, b), 0);
    assert_int_equal(h_stats(c, 2).elections_started +
                     h_stats(c, 3).elections_started, started);
    assert_int_equal(h_status(c, 2).leader_id, 1);
    assert_true(h_stats(c, 1).stalls >= 1);
    assert_true(h_stats(c, 2).stalled_ms >= 1400);
    h_free(c);
}

/* ... and a follower whose host is late at every step still campaigns
 * once its leader is really gone: the time it asked for counts (50 ms of
 * each 400 here, against an election timeout of 100-200 ms). */
static void test_a_late_follower_still_campaigns(void **state)
{
    (void)state;
    cluster *c = h_cluster(3, NULL);
    h_elect(c, 1);
    h_settle(c, 200);
    c->n[1].down = true;            /* the leader is gone */
    uint64_t started = h_stats(c, 2).elections_started;
    for (int i = 0; i < 10 && h_stats(c, 2).elections_started == started;
         i++) {
        c->now += 400;              /* every step 300 ms late or more */
        h_tick(c, 2);
        h_run(c);
    }
    assert_true(h_stats(c, 2).elections_started > started);
    assert_true(h_stats(c, 2).stalls >= 2);
    h_free(c);
}

static void test_forwarding(void **state)
{
    (void)state;
    cluster *c = h_cluster(3, NULL);
    h_elect(c, 1);
    h_propose(c, 3, 9, 1, "fwd");
    assert_int_equal(h_count(c, PX_MSG_FORWARD, 3, 1), 1);
    assert_int_equal(h_status(c, 3).pending_requests, 1);
    h_drop(c, PX_MSG_FORWARD, 3, 1); /* lost: re-forwarded after retry */
    c->now += 60;
    h_tick(c, 3);
    assert_int_equal(h_count(c, PX_MSG_FORWARD, 3, 1), 1);
    h_run(c);
    c->now += 20;
    h_tick(c, 1);
    h_run(c);
    for (uint32_t id = 1; id <= 3; id++)
        assert_true(h_log_has(&c->n[id].log[2], 9, 1));
    assert_int_equal(h_status(c, 3).pending_requests, 0);
    assert_int_equal(h_stats(c, 3).requests_forwarded, 2);
    /* queue bound: the 65th pending request fails with -EAGAIN */
    c->n[2].cut = true;
    c->n[1].cut = true;
    for (uint64_t s = 1; s <= 65; s++)
        h_propose(c, 3, 10, s, "q");
    assert_int_equal(c->n[3].n_failed, 1);
    assert_int_equal(c->n[3].failed[0].status, -EAGAIN);
    assert_int_equal(c->n[3].failed[0].seq, 65);
    h_free(c);
}

/* Followers learn the commit index from the next ACCEPT, from a COMMIT
 * message once commit_notice_ms passed, or at once when a request they
 * forwarded was committed; a commit costs no HEARTBEAT round. */
static void test_commit_notice(void **state)
{
    (void)state;
    cluster *c = h_cluster(3, tweak_eager);
    h_elect(c, 1);
    h_propose(c, 1, 7, 1, "a");
    assert_int_equal(h_deliver(c, PX_MSG_ACCEPT, 1, 0), 2);
    assert_int_equal(h_deliver(c, PX_MSG_ACCEPTED, 0, 1), 2);
    assert_int_equal(c->n[1].applied, 2);
    assert_int_equal(c->nq, 0); /* nothing more on the wire */
    assert_int_equal(c->n[2].applied, 1);
    /* the next ACCEPT carries it */
    h_propose(c, 1, 7, 2, "b");
    assert_int_equal(h_deliver(c, PX_MSG_ACCEPT, 1, 0), 2);
    assert_int_equal(c->n[2].applied, 2);
    assert_int_equal(c->n[3].applied, 2);
    h_deliver(c, PX_MSG_ACCEPTED, 0, 1);
    assert_int_equal(c->n[1].applied, 3);
    assert_int_equal(c->nq, 0);
    /* none came: a COMMIT once commit_notice_ms passed, unanswered */
    c->now += 1;
    h_tick(c, 1);
    assert_int_equal(h_count(c, PX_MSG_COMMIT, 1, 0), 0);
    c->now += 1;
    h_tick(c, 1);
    assert_int_equal(h_count(c, PX_MSG_COMMIT, 1, 0), 2);
    h_run(c);
    assert_int_equal(c->n[2].applied, 3);
    assert_int_equal(c->n[3].applied, 3);
    /* a forwarded request: its forwarder gets the leader's own vote
     * (leader.c invariant 9) and commits by itself, before the leader
     * knows; no COMMIT, and no one else is told */
    h_propose(c, 3, 9, 1, "fwd");
    assert_int_equal(h_deliver(c, PX_MSG_FORWARD, 3, 1), 1);
    assert_int_equal(h_count(c, PX_MSG_ACCEPT, 1, 0), 2);
    assert_int_equal(h_count(c, PX_MSG_ACCEPTED, 1, 3), 1);   /* the vote */
    assert_int_equal(h_deliver(c, PX_MSG_ACCEPTED, 1, 3), 1);
    assert_int_equal(c->n[3].applied, 3);   /* it has not accepted yet */
    assert_int_equal(h_deliver(c, PX_MSG_ACCEPT, 1, 3), 1);
    assert_int_equal(c->n[3].applied, 4);   /* vote + its own: chosen */
    assert_int_equal(c->n[1].applied, 3);   /* the leader does not know */
    assert_int_equal(h_deliver(c, PX_MSG_ACCEPT, 1, 2), 1);
    assert_int_equal(h_deliver(c, PX_MSG_ACCEPTED, 0, 1), 2);
    assert_int_equal(c->n[1].applied, 4);
    assert_int_equal(h_count(c, PX_MSG_COMMIT, 1, 0), 0);
    assert_int_equal(c->nq, 0);
    h_run(c);
    assert_int_equal(c->n[3].applied, 4);
    assert_true(h_log_has(&c->n[3].log[4], 9, 1));
    assert_int_equal(h_status(c, 3).pending_requests, 0);
    assert_int_equal(c->n[2].applied, 3);
    h_free(c);
}

/* Thrifty phase 2 (leader.c invariant 7): a batch goes at once to one
 * follower of two (a quorum with the leader), the other gets it a
 * heartbeat interval later with the commit; a forwarder gets its batch at
 * once; a silent eager follower is replaced by the one that answers. */
static void test_thrifty_phase2(void **state)
{
    (void)state;
    cluster *c = h_cluster(3, NULL);
    h_elect(c, 1);
    h_run(c);
    c->now += 10;   /* a heartbeat interval: the no-op reaches node 3 too */
    h_tick(c, 1);
    h_run(c);
    assert_int_equal(c->n[3].applied, 1);
    /* ties on match: the lower id is eager */
    h_propose(c, 1, 7, 1, "a");
    assert_int_equal(h_count(c, PX_MSG_ACCEPT, 1, 2), 1);
    assert_int_equal(h_count(c, PX_MSG_ACCEPT, 1, 3), 0);
    h_run(c);
    assert_int_equal(c->n[1].applied, 2);   /* leader + node 2 */
    assert_int_equal(c->n[3].applied, 1);
    /* node 2 learns the commit after commit_notice_ms; node 3, which
     * lacks the entry, gets no bare COMMIT (it would only ask for it) */
    c->now += 2;
    h_tick(c, 1);
    assert_int_equal(h_count(c, PX_MSG_COMMIT, 1, 2), 1);
    assert_int_equal(h_count(c, PX_MSG_COMMIT, 1, 3), 0);
    assert_int_equal(h_count(c, PX_MSG_ACCEPT, 1, 3), 0);
    h_run(c);
    /* a heartbeat interval after the batch, slot 2 reaches node 3 with
     * the commit */
    c->now += 7;
    h_tick(c, 1);
    assert_int_equal(h_count(c, PX_MSG_ACCEPT, 1, 3), 0);
    c->now += 1;
    h_tick(c, 1);
    assert_int_equal(h_count(c, PX_MSG_ACCEPT, 1, 3), 1);
    assert_int_equal(h_count(c, PX_MSG_COMMIT, 1, 3), 0);
    h_run(c);
    assert_int_equal(c->n[3].applied, 2);
    assert_true(h_log_has(&c->n[3].log[2], 7, 1));

    /* a request node 3 forwarded: its batch goes to node 3, which is
     * the quorum with the leader; node 2 waits for the lazy fill */
    h_propose(c, 3, 9, 1, "fwd");
    assert_int_equal(h_deliver(c, PX_MSG_FORWARD, 3, 1), 1);
    assert_int_equal(h_count(c, PX_MSG_ACCEPT, 1, 2), 0);
    assert_int_equal(h_count(c, PX_MSG_ACCEPT, 1, 3), 1);
    h_run(c);
    assert_int_equal(c->n[3].applied, 3);
    assert_true(h_log_has(&c->n[3].log[3], 9, 1));

    /* node 3 is now the most caught up, so the eager one; it goes
     * silent: the next batch waits for node 2, which gets it a heartbeat
     * interval later, answers, and becomes the eager one */
    c->n[3].down = true;
    h_propose(c, 1, 7, 2, "b");
    assert_int_equal(h_count(c, PX_MSG_ACCEPT, 1, 3), 1);
    assert_int_equal(h_count(c, PX_MSG_ACCEPT, 1, 2), 0);
    h_run(c);
    assert_int_equal(c->n[1].applied, 3);   /* no quorum yet */
    c->now += 9;
    h_tick(c, 1);
    h_run(c);
    assert_int_equal(c->n[1].applied, 3);
    c->now += 1;
    h_tick(c, 1);
    h_run(c);
    assert_int_equal(c->n[1].applied, 4);
    h_propose(c, 1, 7, 3, "c");
    assert_int_equal(h_count(c, PX_MSG_ACCEPT, 1, 2), 1);
    h_run(c);
    assert_int_equal(c->n[1].applied, 5);
    c->now += 2;   /* node 2 learns the commit */
    h_tick(c, 1);
    h_run(c);
    assert_int_equal(c->n[2].applied, 5);
    assert_true(h_log_has(&c->n[2].log[3], 9, 1));   /* filled in */
    assert_true(h_log_has(&c->n[2].log[4], 7, 2));
    assert_true(h_log_has(&c->n[2].log[5], 7, 3));
    h_free(c);
}

static void tweak_window1(px_options *o)
{
    o->window_slots = 1;
}

static void test_batching_window_full(void **state)
{
    (void)state;
    cluster *c = h_cluster(3, tweak_window1);
    h_elect(c, 1);
    h_propose(c, 1, 1, 1, "r1");
    assert_int_equal(h_status(c, 1).slots_in_flight, 1);
    h_propose(c, 1, 2, 1, "r2");
    h_propose(c, 1, 3, 1, "r3");
    h_propose(c, 1, 4, 1, "r4");
    assert_int_equal(h_status(c, 1).slots_in_flight, 1);
    assert_int_equal(h_status(c, 1).pending_requests, 4);
    h_run(c);
    c->now += 20;
    h_tick(c, 1);
    h_run(c);
    assert_int_equal(c->n[1].applied, 3);
    assert_int_equal(px_batch_count(c->n[1].log[3].data, c->n[1].log[3].len), 3);
    assert_true(h_log_has(&c->n[2].log[3], 4, 1));
    assert_int_equal(h_status(c, 1).pending_requests, 0);
    h_free(c);
}

static void test_follower_commit_rule(void **state)
{
    (void)state;
    cluster *c = h_cluster(3, NULL);
    px_entry x = {.slot = 1, .kind = PX_ENTRY_BATCH, .len = 4,
                  .data = (const uint8_t *)"\0\0\0\0", .time_ms = 5};
    px_msg a = {.type = PX_MSG_ACCEPT, .from = 1, .to = 3, .ballot = {1, 1},
                .n_entries = 1, .entries = &x};
    h_step(c, 3, (px_event){.type = PX_EV_RECEIVE, .u.msg = &a});
    assert_int_equal(c->n[3].n_acc, 1);
    h_drop(c, 0, 0, 0);
    px_msg hb = {.type = PX_MSG_HEARTBEAT, .from = 2, .to = 3,
                 .ballot = {2, 2}, .commit = 1};
    h_step(c, 3, (px_event){.type = PX_EV_RECEIVE, .u.msg = &hb});
    assert_int_equal(c->n[3].applied, 0); /* held in ballot (1,1): unsure */
    assert_int_equal(h_count(c, PX_MSG_CATCHUP_REQ, 3, 2), 1);
    h_drop(c, 0, 0, 0);
    px_entry y = {.slot = 1, .ballot = {2, 2}, .kind = PX_ENTRY_NOOP,
                  .time_ms = 6};
    px_msg cu = {.type = PX_MSG_CATCHUP, .from = 2, .to = 3, .ballot = {2, 2},
                 .slot = 1, .commit = 1, .n_entries = 1, .entries = &y};
    h_step(c, 3, (px_event){.type = PX_EV_RECEIVE, .u.msg = &cu});
    assert_int_equal(c->n[3].applied, 1);
    assert_int_equal(c->n[3].log[1].kind, PX_ENTRY_NOOP);
    assert_int_equal(c->n[3].log[1].time_ms, 6);
    /* a value held in the leader's ballot is applied directly */
    px_entry z = {.slot = 2, .kind = PX_ENTRY_NOOP, .time_ms = 7};
    px_msg a2 = {.type = PX_MSG_ACCEPT, .from = 2, .to = 3, .ballot = {2, 2},
                 .n_entries = 1, .entries = &z, .commit = 1};
    h_step(c, 3, (px_event){.type = PX_EV_RECEIVE, .u.msg = &a2});
    hb.commit = 2;
    h_step(c, 3, (px_event){.type = PX_EV_RECEIVE, .u.msg = &hb});
    assert_int_equal(c->n[3].applied, 2);
    h_free(c);
}

static void tweak_retain2(px_options *o)
{
    o->retain_slots = 2;
}

static void test_snapshot_needed(void **state)
{
    (void)state;
    cluster *c = h_cluster(3, tweak_retain2);
    h_elect(c, 1);
    c->n[3].cut = true;
    for (uint64_t s = 1; s <= 8; s++) {
        h_propose(c, 1, 1, s, "v");
        h_run(c);
    }
    uint64_t commit = h_status(c, 1).commit_index;
    assert_true(commit >= 8);
    /* the leader's host took a snapshot and compacted its chain */
    uint64_t base = commit - 1;
    c->n[1].chain_base = base;
    px_set_chain_base(c->n[1].r, base);
    assert_int_equal(px_chain_base(c->n[1].r), base);
    px_set_chain_base(c->n[1].r, 1);      /* the base never goes back */
    assert_int_equal(px_chain_base(c->n[1].r), base);
    c->n[3].cut = false;
    c->now += 20;
    h_tick(c, 1);
    h_run(c);
    c->now += 1;
    h_tick(c, 1); /* compaction happens at the start of a step */
    h_run(c);
    assert_int_equal(c->n[1].snap_to, 3);
    assert_int_equal(c->n[3].snap_from, 1);
    assert_int_equal(c->n[1].catchup_to, 0);  /* no chain block below */
    assert_true(h_status(c, 1).first_retained > 2);
    /* the host ships a snapshot; node 3 jumps and continues */
    uint64_t index = h_status(c, 1).commit_index;
    px_event ev = {.type = PX_EV_SNAPSHOT_INSTALLED};
    ev.u.snapshot.index = index;
    ev.u.snapshot.members = c->n[1].opt.members;
    memset(ev.u.snapshot.hash, 0xab, PX_HASH_BYTES);
    h_step(c, 3, ev);
    c->n[3].applied = index; /* the host's state machine is at index */
    assert_int_equal(h_status(c, 3).commit_index, index);
    assert_int_equal(px_chain_base(c->n[3].r), index);
    assert_int_equal(h_stats(c, 3).snapshots_installed, 1);
    /* its messages carry the snapshot's head as its chain head */
    c->now += 20;
    h_tick(c, 1);
    assert_true(h_deliver(c, PX_MSG_HEARTBEAT, 1, 3) > 0);
    bool acked = false;
    for (uint32_t k = 0; k < c->nq; k++) {
        const px_msg *m = c->q[k];
        if (m->from == 3 && m->type == PX_MSG_HEARTBEAT_ACK) {
            assert_int_equal(m->chain_index, index);
            assert_int_equal(m->chain_hash[0], 0xab);
            acked = true;
        }
    }
    assert_true(acked);
    h_run(c);
    /* an older snapshot changes nothing */
    ev.u.snapshot.index = index - 1;
    h_step(c, 3, ev);
    assert_int_equal(h_stats(c, 3).snapshots_installed, 1);
    h_propose(c, 1, 1, 100, "after");
    h_run(c);
    c->now += 20;
    h_tick(c, 1);
    h_run(c);
    assert_int_equal(c->n[3].applied, index + 1);
    assert_true(h_log_has(&c->n[3].log[index + 1], 1, 100));
    h_free(c);
}

/* A peer that lags behind what the leader retains, but not behind what
 * its host's chain holds, is served from the chain (catchup_to, from the
 * slot it asked for): no SNAPSHOT_NEEDED, no snapshot. */
static void test_catchup_from_chain_above_base(void **state)
{
    (void)state;
    cluster *c = h_cluster(3, tweak_retain2);
    h_elect(c, 1);
    uint64_t first = h_status(c, 3).commit_index;
    c->n[3].cut = true;
    for (uint64_t s = 1; s <= 8; s++) {
        h_propose(c, 1, 1, s, "v");
        h_run(c);
    }
    uint64_t commit = h_status(c, 1).commit_index;
    c->n[3].cut = false;
    for (int i = 0; i < 20 && c->n[3].applied < commit; i++) {
        c->now += 60;
        h_tick(c, 1);
        h_tick(c, 3);
        h_run(c);
    }
    assert_int_equal(c->n[1].catchup_to, 3);
    assert_int_equal(c->n[1].snap_to, 0);
    assert_int_equal(c->n[3].snap_from, 0);
    assert_true(c->n[3].applied >= commit);
    assert_true(first < commit);
    for (uint64_t s = 1; s <= 8; s++) {
        bool found = false;
        for (uint64_t x = 1; x <= c->n[3].applied; x++)
            found = found || h_log_has(&c->n[3].log[x], 1, s);
        assert_true(found);
    }
    h_free(c);
}

/* PX_EV_CHECKPOINT: a leader proposes one PX_ENTRY_CHECKPOINT entry with
 * the index and digest, every replica commits it in slot order; a newer
 * checkpoint replaces one not yet proposed; a follower ignores it. */
static void test_checkpoint_entry(void **state)
{
    (void)state;
    cluster *c = h_cluster(3, tweak_window1);
    h_elect(c, 1);
    px_event ev = {.type = PX_EV_CHECKPOINT};
    ev.u.checkpoint.index = 1;
    memset(ev.u.checkpoint.digest, 0x11, PX_DIGEST_BYTES);
    h_step(c, 2, ev);                   /* a follower: nothing */
    assert_int_equal(h_stats(c, 2).checkpoints_proposed, 0);
    /* a batch fills the window (1 slot); two checkpoints queue, the
     * newer replaces the older */
    c->n[1].hold = true;
    h_propose(c, 1, 7, 1, "x");
    h_step(c, 1, ev);
    ev.u.checkpoint.index = 2;
    memset(ev.u.checkpoint.digest, 0x22, PX_DIGEST_BYTES);
    h_step(c, 1, ev);
    assert_int_equal(h_stats(c, 1).checkpoints_proposed, 0);
    c->n[1].hold = false;
    h_release(c, 1);
    for (int i = 0; i < 10; i++) {
        c->now += 20;
        h_tick(c, 1);
        h_run(c);
    }
    assert_int_equal(h_stats(c, 1).checkpoints_proposed, 1);
    for (uint32_t id = 1; id <= 3; id++) {
        hnode *h = &c->n[id];
        uint32_t found = 0;
        for (uint64_t s = 1; s <= h->applied; s++) {
            if (h->log[s].kind != PX_ENTRY_CHECKPOINT)
                continue;
            px_checkpoint cp;
            assert_int_equal(px_checkpoint_decode(h->log[s].data,
                                                  h->log[s].len, &cp), 0);
            assert_int_equal(cp.index, 2);
            assert_int_equal(cp.digest[31], 0x22);
            assert_true(s > 2);
            found++;
        }
        assert_int_equal(found, 1);
    }
    /* index 0 is refused */
    px_output out;
    ev.u.checkpoint.index = 0;
    ev.now_ms = c->now;
    assert_int_equal(px_step(c->n[1].r, &ev, &out), -EINVAL);
    h_free(c);
}

static void tweak_retain_bytes(px_options *o)
{
    o->retain_slots = 1000;
    o->retain_bytes = 3000;
}

/* Retained history is bounded in bytes as well as in slots: values of a
 * few KiB each keep only the last few slots, and the newest committed
 * slot stays whatever its size. */
static void test_retained_bytes_bounded(void **state)
{
    (void)state;
    cluster *c = h_cluster(3, tweak_retain_bytes);
    h_elect(c, 1);
    static char big[1025];
    memset(big, 'b', 1024);
    for (uint64_t s = 1; s <= 20; s++) {
        h_propose(c, 1, 1, s, big);
        h_run(c);
    }
    c->now += 1;
    h_tick(c, 1); /* compaction happens at the start of a step */
    h_run(c);
    px_status st = h_status(c, 1);
    assert_true(st.commit_index >= 20);
    assert_true(px_retained_bytes(c->n[1].r) <= 3000);
    assert_true(px_retained_bytes(c->n[1].r) >= 1024);
    assert_true(st.first_retained + 4 >= st.commit_index);
    assert_true(st.first_retained <= st.commit_index);
    /* one value larger than the bound: the newest slot is kept */
    static char huge[5001];
    memset(huge, 'h', 5000);
    h_propose(c, 1, 1, 100, huge);
    h_run(c);
    c->now += 1;
    h_tick(c, 1);
    h_run(c);
    st = h_status(c, 1);
    assert_int_equal(st.first_retained, st.commit_index);
    assert_true(px_retained_bytes(c->n[1].r) > 5000);
    h_free(c);
}

/* Invariant 8 of leader.c: a peer that does not answer gets re-sends
 * with a doubling wait, not one every retry interval (a slow peer sent
 * its 4 MiB values again and again fell further behind for good). */
/* Deliver everything, but nothing to or from node `iso`; returns how
 * many ACCEPTs were addressed to it. */
static uint32_t h_run_isolating(cluster *c, uint32_t iso)
{
    uint32_t accepts = 0;
    while (c->nq) {
        accepts += h_drop(c, PX_MSG_ACCEPT, 0, iso);
        h_drop(c, 0, 0, iso);
        h_drop(c, 0, iso, 0);
        h_deliver(c, 0, 0, 0);
    }
    return accepts;
}

static void test_resend_backs_off(void **state)
{
    (void)state;
    cluster *c = h_cluster(3, NULL);
    h_elect(c, 1);
    h_propose(c, 1, 1, 1, "v");
    uint32_t accepts = h_run_isolating(c, 2);
    for (int t = 0; t < 300; t++) {   /* 3 s of 10 ms ticks */
        c->now += 10;
        h_tick(c, 1);
        h_tick(c, 3);
        accepts += h_run_isolating(c, 2);
    }
    assert_true(h_status(c, 1).commit_index >= 2);   /* with node 3 */
    /* re-sends after 100, 200, 400, 800, 1600 ms: a handful, not one per
     * retry interval (30) */
    print_message("ACCEPTs to the silent peer in 3 s: %u\n", accepts);
    assert_true(accepts >= 3);
    assert_true(accepts <= 8);
    /* back in touch: it is caught up */
    for (int t = 0; t < 400; t++) {
        c->now += 10;
        h_tick(c, 1);
        h_tick(c, 2);
        h_tick(c, 3);
        h_run(c);
    }
    px_status st = h_status(c, 1);
    assert_int_equal(st.role, PX_LEADER);
    for (uint32_t i = 0; i < st.n_peers; i++)
        assert_true(st.peers[i].match_index >= 2);
    h_free(c);
}

/* forward.c invariant 5: a follower whose forwarded request does not
 * commit re-forwards it with a doubling wait, not every retry interval
 * (4 MiB requests were sent again ten times a second). */
static void test_forward_backs_off(void **state)
{
    (void)state;
    cluster *c = h_cluster(3, NULL);
    h_elect(c, 1);
    h_propose(c, 2, 9, 1, "forwarded");
    uint32_t forwards = h_drop(c, PX_MSG_FORWARD, 2, 1);
    h_run(c);
    for (int t = 0; t < 300; t++) {   /* 3 s of 10 ms ticks */
        c->now += 10;
        h_tick(c, 1);
        h_tick(c, 2);
        h_tick(c, 3);
        forwards += h_drop(c, PX_MSG_FORWARD, 2, 1);
        h_run(c);
        forwards += h_drop(c, PX_MSG_FORWARD, 2, 1);
    }
    assert_int_equal(h_status(c, 2).leader_id, 1);
    print_message("FORWARDs of one request in 3 s: %u\n", forwards);
    assert_true(forwards >= 3);
    assert_true(forwards <= 8);
    /* delivered at last: it commits, and node 2 learns so */
    for (int t = 0; t < 400 && h_status(c, 2).pending_requests; t++) {
        c->now += 10;
        h_tick(c, 1);
        h_tick(c, 2);
        h_tick(c, 3);
        h_run(c);
    }
    assert_int_equal(h_status(c, 2).pending_requests, 0);
    h_free(c);
}

static void tweak_no_lease(px_options *o)
{
    o->lease_ms = 0;
}

static void test_read_index(void **state)
{
    (void)state;
    cluster *c = h_cluster(3, tweak_no_lease);
    h_elect(c, 1);
    h_step(c, 1, (px_event){.type = PX_EV_READ_INDEX, .u.read_token = 42});
    assert_int_equal(c->n[1].n_reads, 0); /* needs a quorum round */
    assert_int_equal(h_count(c, PX_MSG_HEARTBEAT, 1, 0), 2);
    h_run(c);
    assert_int_equal(c->n[1].n_reads, 1);
    assert_int_equal(c->n[1].reads[0].read_token, 42);
    assert_int_equal(c->n[1].reads[0].index, 1);
    assert_int_equal(c->n[1].reads[0].status, 0);
    /* a follower asks the leader */
    h_step(c, 2, (px_event){.type = PX_EV_READ_INDEX, .u.read_token = 43});
    h_run(c);
    assert_int_equal(c->n[2].n_reads, 1);
    assert_int_equal(c->n[2].reads[0].read_token, 43);
    assert_int_equal(c->n[2].reads[0].index, 1);
    assert_int_equal(c->n[2].reads[0].status, 0);
    /* a leader cut off from its quorum never confirms: -EAGAIN */
    c->n[2].cut = c->n[3].cut = true;
    h_step(c, 1, (px_event){.type = PX_EV_READ_INDEX, .u.read_token = 44});
    for (int i = 0; i < 60; i++) {
        c->now += 10;
        h_tick(c, 1);
        h_run(c);
    }
    assert_int_equal(c->n[1].n_reads, 2);
    assert_int_equal(c->n[1].reads[1].read_token, 44);
    assert_int_equal(c->n[1].reads[1].status, -EAGAIN);
    assert_int_not_equal(h_status(c, 1).role, PX_LEADER);
    h_free(c);
}

static void commit_one(cluster *c, uint32_t leader, uint64_t client,
                       uint64_t seq);

/* Deliver everything queued, except what travels between a and b. */
static void h_run_split(cluster *c, uint32_t a, uint32_t b)
{
    for (int n = 0; n < 100000; n++) {
        h_drop(c, 0, a, b);
        h_drop(c, 0, b, a);
        if (!c->nq)
            return;
        h_deliver_at(c, 0);
    }
}

/* reads.c invariant 5: a follower that echoed the leader's lease round
 * and restarts has forgotten whom it followed; if it promised a waiting
 * candidate at once, that candidate could win and commit while the old
 * leader still serves reads from its lease.  It promises nobody for
 * lease_ms after its restart. */
static void test_read_lease_restarted_follower(void **state)
{
    (void)state;
    cluster *c = h_cluster(3, NULL);   /* etmin 100 ms: lease 50 ms */
    h_elect(c, 1);
    commit_one(c, 1, 9, 1);
    /* node 3 loses the leader: it campaigns, node 2 (sticky) ignores it */
    for (int i = 0; i < 30; i++) {
        c->now += 10;
        h_tick(c, 1);
        h_tick(c, 3);
        h_run_split(c, 1, 3);
    }
    assert_int_equal(h_status(c, 1).role, PX_LEADER);
    assert_true(h_status(c, 1).read_lease);
    /* node 3 asks node 2 again; its PREPARE is held back while node 2
     * goes on echoing the leader's rounds */
    bool asked = false;
    for (int i = 0; i < 60 && !asked; i++) {
        c->now += 10;
        h_tick(c, 1);
        h_tick(c, 3);
        h_drop(c, 0, 1, 3);
        h_drop(c, 0, 3, 1);
        asked = h_count(c, PX_MSG_PREPARE, 3, 2) > 0;
        for (int k = 0; k < 3; k++) {
            h_deliver(c, 0, 1, 2);
            h_deliver(c, 0, 2, 1);
        }
    }
    assert_true(asked);
    assert_true(h_status(c, 1).read_lease);
    /* node 2 crashes and restarts, the leader is cut off, and node 3's
     * PREPARE arrives */
    c->n[1].cut = true;
    h_restart(c, 2);
    h_run(c);
    uint64_t newer = 0;
    if (h_status(c, 3).role == PX_LEADER) {
        h_propose(c, 3, 9, 2, "w");   /* committed by nodes 3 and 2 */
        h_run(c);
        newer = h_status(c, 3).commit_index;
    }
    /* the old leader, within its lease: its answer must not miss that */
    c->n[1].n_reads = 0;
    h_step(c, 1, (px_event){.type = PX_EV_READ_INDEX, .u.read_token = 7});
    if (c->n[1].n_reads == 1 && c->n[1].reads[0].status == 0)
        assert_true(c->n[1].reads[0].index >= newer);
    h_free(c);
}

/* reads.c invariant 7: a follower asks the leader once for all the
 * reads waiting in a step, and an answer serves only the reads that had
 * arrived before the round it answers was sent. */
static void test_follower_reads_share_one_round(void **state)
{
    (void)state;
    cluster *c = h_cluster(3, NULL);
    h_elect(c, 1);
    uint64_t tokens[5] = {101, 102, 103, 104, 105};
    px_event ev = {.type = PX_EV_READ_BATCH};
    ev.u.reads.tokens = tokens;
    ev.u.reads.n = 5;
    h_step(c, 2, ev);
    assert_int_equal(h_count(c, PX_MSG_FORWARD, 2, 1), 1);
    /* a sixth read arrives before the answer: a round of its own */
    h_step(c, 2, (px_event){.type = PX_EV_READ_INDEX, .u.read_token = 106});
    assert_int_equal(h_count(c, PX_MSG_FORWARD, 2, 1), 2);
    /* the leader answers the first round only */
    h_deliver_at(c, 0);
    assert_int_equal(h_count(c, PX_MSG_FORWARD, 1, 2), 1);
    for (uint32_t k = 0; k < c->nq; k++)
        if (h_match(c->q[k], PX_MSG_FORWARD, 1, 2)) {
            h_deliver_at(c, k);
            break;
        }
    assert_int_equal(c->n[2].n_reads, 5);
    for (uint32_t i = 0; i < 5; i++) {
        assert_int_equal(c->n[2].reads[i].status, 0);
        assert_true(c->n[2].reads[i].read_token != 106);
    }
    h_run(c);
    assert_int_equal(c->n[2].n_reads, 6);
    assert_int_equal(c->n[2].reads[5].read_token, 106);
    h_free(c);
}

/* reads.c invariant 7: a follower restarted while the leader's answer to
 * one of its read rounds was in flight must not take that answer, computed
 * before its new read arrived, for the answer to a round of its own
 * (simulator seed 6510: a stale read). */
static uint32_t reads_of(cluster *c, uint32_t id, uint64_t token)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < c->n[id].n_reads; i++)
        n += c->n[id].reads[i].read_token == token;
    return n;
}

static void test_follower_read_answer_from_before_a_restart(void **state)
{
    (void)state;
    cluster *c = h_cluster(3, NULL);
    h_elect(c, 1);
    h_run(c);
    h_step(c, 2, (px_event){.type = PX_EV_READ_INDEX, .u.read_token = 101});
    /* deliver until the leader answers node 2's round; keep the answer */
    for (int n = 0; n < 1000 && !h_count(c, PX_MSG_FORWARD, 1, 2) && c->nq; n++)
        h_deliver_at(c, 0);
    px_msg *old = NULL;
    for (uint32_t k = 0; k < c->nq && !old; k++)
        if (h_match(c->q[k], PX_MSG_FORWARD, 1, 2)) {
            old = c->q[k];
            memmove(&c->q[k], &c->q[k + 1],
                    (c->nq - k - 1) * sizeof(px_msg *));
            c->nq--;
        }
    assert_non_null(old);
    assert_int_equal(reads_of(c, 2, 101), 0);
    h_run(c);
    /* node 2 starts again (a new incarnation draws a new seed, as the
     * node runtime does at every start) and learns the leader */
    /* (this seed draws a base below the old one: only the range check
     * keeps the old answer out) */
    c->n[2].opt.seed += 5;
    h_restart(c, 2);
    h_propose(c, 1, 7, 1, "after the restart");
    h_run(c);
    assert_int_equal(h_status(c, 2).leader_id, 1);
    h_step(c, 2, (px_event){.type = PX_EV_READ_INDEX, .u.read_token = 201});
    assert_int_equal(h_count(c, PX_MSG_FORWARD, 2, 1), 1);
    /* the old answer arrives now: not an answer to the new round */
    h_step(c, 2, (px_event){.type = PX_EV_RECEIVE, .u.msg = old});
    free(old);
    assert_int_equal(reads_of(c, 2, 201), 0);
    /* the leader's answer to the new round serves it */
    h_run(c);
    assert_int_equal(reads_of(c, 2, 201), 1);
    h_free(c);
}

static void test_restart_never_reuses_ballot(void **state)
{
    (void)state;
    cluster *c = h_cluster(1, NULL);
    px_destroy(c->n[1].r);
    px_restore rs = {.promise = {7, 1}};
    h_start(c, 1, &rs);
    h_tick(c, 1);
    assert_int_equal(h_status(c, 1).role, PX_LEADER);
    assert_int_equal(h_status(c, 1).ballot.round, 8);
    /* an accepted value in a higher ballot also counts as promised */
    px_destroy(c->n[1].r);
    px_entry e = {.slot = 3, .ballot = {11, 2}, .kind = PX_ENTRY_NOOP};
    px_restore rs2 = {.promise = {7, 1}, .applied_index = 2, .n_accepts = 1,
                      .accepts = &e};
    c->n[1].applied = 2;
    h_start(c, 1, &rs2);
    h_tick(c, 1);
    assert_int_equal(h_status(c, 1).ballot.round, 12);
    /* the restored value is re-learned through phase 1, not re-invented */
    assert_int_equal(c->n[1].applied, 3);
    assert_int_equal(c->n[1].log[3].kind, PX_ENTRY_NOOP);
    h_free(c);
    /* three nodes: a restarted leader campaigns above its old ballot */
    c = h_cluster(3, NULL);
    h_elect(c, 1);
    px_ballot b = h_status(c, 1).ballot;
    h_restart(c, 1);
    h_elect(c, 1);
    assert_true(px_ballot_cmp(h_status(c, 1).ballot, b) > 0);
    h_free(c);
}

/* Node 2 accepted slot 3 with the leader (node 1), which committed it
 * with node 2's vote; node 3 never saw it.  Node 2 then loses its
 * acceptor store.  Restarted recovering, it casts no vote: node 3 cannot
 * be elected with it while node 1 is away (that election would fill slot
 * 3 with a NOOP over the chosen value), and its recovery round waits for
 * every other voter.  Once node 1 is back the round completes, the others
 * elect a leader that re-commits slot 3, and node 2 votes again only after
 * it has learned slot 3. */
static void test_lost_acceptor_state_recovers(void **state)
{
    (void)state;
    cluster *c = h_cluster(3, tweak_eager);
    h_elect(c, 1);
    h_propose(c, 1, 5, 1, "a");
    h_run(c);
    c->now += 10;
    h_tick(c, 1);
    h_run(c);
    assert_int_equal(c->n[2].applied, 2);
    h_propose(c, 1, 5, 2, "b");
    h_drop(c, PX_MSG_ACCEPT, 1, 3);
    h_deliver(c, PX_MSG_ACCEPT, 1, 2);
    h_deliver(c, PX_MSG_ACCEPTED, 2, 1);
    assert_int_equal(c->n[1].applied, 3);       /* chosen by {1, 2} */
    h_drop(c, 0, 0, 0);
    assert_int_equal(c->n[2].applied, 2);
    assert_int_equal(c->n[3].applied, 2);

    /* node 2 loses its acceptor store (chain kept: applied 2) */
    hnode *h2 = &c->n[2];
    px_destroy(h2->r);
    for (uint32_t i = 0; i < h2->n_acc; i++)
        free((void *)h2->d_acc[i].data);
    h2->n_acc = 0;
    h2->d_promise = (px_ballot){0, 0};
    px_restore rs = {.applied_index = h2->applied, .members = h2->members,
                     .recovering = true};
    h_start(c, 2, &rs);
    assert_true(h_status(c, 2).recovering);

    /* node 1 away: node 3 cannot win an election with node 2's vote */
    c->n[1].cut = true;
    for (int i = 0; i < 40; i++) {
        c->now += 60;
        h_tick(c, 2);
        h_tick(c, 3);
        h_run(c);
        assert_int_not_equal(h_status(c, 3).role, PX_LEADER);
    }
    px_status st = h_status(c, 2);
    assert_true(st.recovering);
    assert_int_equal(st.recovery_needed, 2);
    assert_true(st.recovery_promised <= 1);
    assert_int_equal(st.recovery_slot, 0);
    assert_int_equal(c->n[3].applied, 2);

    /* node 1 back: the round completes, a leader re-commits slot 3 */
    c->n[1].cut = false;
    for (int i = 0; i < 100 && (h_status(c, 2).recovering ||
                                c->n[3].applied < 3); i++) {
        c->now += 60;
        for (uint32_t id = 1; id <= 3; id++)
            h_tick(c, id);
        h_run(c);
    }
    assert_false(h_status(c, 2).recovering);
    for (uint32_t id = 1; id <= 3; id++) {
        assert_true(c->n[id].applied >= 3);
        assert_true(h_log_has(&c->n[id].log[3], 5, 2));
    }
    assert_true(px_ballot_cmp(c->n[2].d_promise, st.recovery_ballot) >= 0);
    /* and node 2 votes again */
    uint32_t leader = h_status(c, 1).leader_id;
    assert_true(leader == 1 || leader == 3);
    h_propose(c, leader, 5, 3, "c");
    assert_true(h_count(c, PX_MSG_ACCEPT, leader, 2) >= 1);
    h_deliver(c, PX_MSG_ACCEPT, leader, 2);
    assert_int_equal(h_count(c, PX_MSG_ACCEPTED, 2, leader), 1);
    h_run(c);
    h_free(c);
}

/* A follower that lost its acceptor state (a wiped directory) starts
 * recovering; its recovery PREPARE deposes the leader (it must promise a
 * ballot above everything the recovering voter knew).  The deposed leader
 * campaigns again at once, in a ballot above the recovery's, and leads
 * again without any election timeout passing; the recovery round still
 * completes (acceptor.c invariant 8). */
static void test_leader_deposed_by_recovery_campaigns_at_once(void **state)
{
    (void)state;
    cluster *c = h_cluster(3, tweak_eager);
    h_elect(c, 1);
    commit_one(c, 1, 5, 1);
    commit_one(c, 1, 5, 2);
    px_ballot before = h_status(c, 1).ballot;

    hnode *h3 = &c->n[3];
    px_destroy(h3->r);
    for (uint32_t i = 0; i < h3->n_acc; i++)
        free((void *)h3->d_acc[i].data);
    h3->n_acc = 0;
    h3->d_promise = (px_ballot){0, 0};
    px_restore rs = {.applied_index = h3->applied, .members = h3->members,
                     .recovering = true};
    h_start(c, 3, &rs);
    assert_true(h_status(c, 3).recovering);
    /* node 3's recovery round with node 1 alone (its first ballot, from
     * an empty store, is rejected; it retries above): node 2 hears
     * nothing of it, so node 1 steps down while node 2 still follows it */
    for (int i = 0; i < 50 && h_status(c, 1).role == PX_LEADER; i++) {
        c->now += 10;
        h_tick(c, 3);
        h_drop(c, PX_MSG_PREPARE, 3, 2);
        h_deliver(c, 0, 3, 1);
        h_deliver(c, 0, 1, 3);
    }
    assert_int_not_equal(h_status(c, 1).role, PX_LEADER);
    assert_int_equal(h_status(c, 2).leader_id, 1);
    /* at once, no tick: a real PREPARE (no probe) above the recovery's */
    assert_true(h_count(c, PX_MSG_PREPARE, 1, 2) >= 1);
    for (uint32_t k = 0; k < c->nq; k++) {
        px_msg *m = c->q[k];
        if (m->type == PX_MSG_PREPARE && m->from == 1 && m->to == 2) {
            assert_int_equal(m->aux, 0);
            assert_true(px_ballot_cmp(m->ballot, before) > 0);
            assert_true(px_ballot_cmp(m->ballot, h_status(c, 3).recovery_ballot) > 0);
        }
    }
    h_run(c);
    assert_int_equal(h_status(c, 1).role, PX_LEADER);
    assert_int_equal(h_status(c, 2).leader_id, 1);
    /* the recovery round completes (retried above the new ballot) and
     * node 3 votes again, with node 1 still leading */
    for (int i = 0; i < 100 && h_status(c, 3).recovering; i++) {
        c->now += 60;
        for (uint32_t id = 1; id <= 3; id++)
            h_tick(c, id);
        h_run(c);
    }
    assert_false(h_status(c, 3).recovering);
    uint32_t leader = h_status(c, 2).leader_id;
    assert_true(leader == 1 || leader == 2);
    commit_one(c, leader, 5, 3);
    for (uint32_t id = 1; id <= 3; id++)
        assert_true(c->n[id].applied >= 3);
    h_free(c);
}

static bool h_failed_with(const hnode *h, uint64_t client, uint64_t seq,
                          int status)
{
    for (uint32_t i = 0; i < h->n_failed; i++)
        if (h->failed[i].client_id == client && h->failed[i].seq == seq)
            return h->failed[i].status == status;
    return false;
}

/* The leader's host cannot persist any more (px_suspend): at its next
 * step it steps down, answers what was submitted there with -EIO and
 * from then on sends nothing, votes for nobody and never campaigns, while
 * the other two elect a leader and go on committing; a request it had
 * already proposed may still commit.  A new replica built from its store
 * (what a host does once persisting works again) catches up and votes. */
static void tweak_eager_no_lease(px_options *o)
{
    tweak_eager(o);
    o->lease_ms = 0;   /* the read below must still wait for its round */
}

static void test_suspended_replica_neither_leads_nor_votes(void **state)
{
    (void)state;
    cluster *c = h_cluster(3, tweak_eager_no_lease);
    h_elect(c, 1);
    h_propose(c, 1, 5, 1, "a");
    h_run(c);
    c->now += 10;
    h_tick(c, 1);
    h_run(c);
    assert_int_equal(c->n[2].applied, 2);

    /* a request proposed (its ACCEPTs out) and a read, then the failure */
    c->n[1].hold = true;
    h_propose(c, 1, 5, 2, "b");
    h_step(c, 1, (px_event){.type = PX_EV_READ_INDEX, .u.read_token = 9});
    uint32_t queued = c->nq;
    px_suspend(c->n[1].r);
    assert_true(px_suspended(c->n[1].r));
    c->n[1].n_reads = c->n[1].n_failed = 0;
    h_tick(c, 1);
    px_status st = h_status(c, 1);
    assert_true(st.suspended);
    assert_int_equal(st.role, PX_FOLLOWER);
    assert_int_equal(st.leader_id, 0);
    assert_int_equal(st.pending_requests, 0);
    assert_int_equal(px_leader_contact_ms(c->n[1].r), 0);
    assert_true(h_failed_with(&c->n[1], 5, 2, -EIO));
    assert_int_equal(c->n[1].n_reads, 1);
    assert_int_equal(c->n[1].reads[0].read_token, 9);
    assert_int_equal(c->n[1].reads[0].status, -EIO);
    assert_int_equal(c->nq, queued);              /* nothing more left it */
    /* submitted later: answered at once */
    h_propose(c, 1, 6, 1, "x");
    assert_true(h_failed_with(&c->n[1], 6, 1, -EIO));
    h_step(c, 1, (px_event){.type = PX_EV_READ_INDEX, .u.read_token = 10});
    assert_int_equal(c->n[1].reads[1].read_token, 10);
    assert_int_equal(c->n[1].reads[1].status, -EIO);
    h_release(c, 1);                     /* a late PERSISTED changes nothing */
    assert_int_equal(c->n[1].applied, 2);

    /* the others elect a leader; node 1 answers no message and never
     * campaigns, however long it waits */
    uint64_t received = h_stats(c, 1).msgs_received;
    uint64_t elections = h_stats(c, 1).elections_started;
    uint32_t leader = 0;
    for (int i = 0; i < 100 && !leader; i++) {
        c->now += 20;
        uint32_t from1 = h_count(c, 0, 1, 0);   /* sent before: in flight */
        for (uint32_t id = 1; id <= 3; id++)
            h_tick(c, id);
        assert_int_equal(h_count(c, 0, 1, 0), from1);
        h_run(c);
        for (uint32_t id = 2; id <= 3; id++)
            if (h_status(c, id).role == PX_LEADER)
                leader = id;
    }
    assert_true(leader == 2 || leader == 3);
    px_stats ps = h_stats(c, 1);
    assert_true(ps.msgs_suspended > 0);
    assert_int_equal(ps.msgs_received - received, ps.msgs_suspended);
    assert_int_equal(ps.elections_started, elections);
    /* its proposal of (5, 2) reached nodes 2 and 3: the new leader's
     * phase 1 finds it and commits it; new writes commit with two votes */
    h_propose(c, leader, 7, 1, "c");
    for (int i = 0; i < 20; i++) {
        c->now += 20;
        for (uint32_t id = 1; id <= 3; id++)
            h_tick(c, id);
        h_run(c);
    }
    uint32_t other = leader == 2 ? 3 : 2;
    assert_true(c->n[other].applied >= 4);
    bool seen_b = false, seen_c = false;
    for (uint64_t s = 1; s <= c->n[other].applied; s++) {
        seen_b |= h_log_has(&c->n[other].log[s], 5, 2);
        seen_c |= h_log_has(&c->n[other].log[s], 7, 1);
    }
    assert_true(seen_b && seen_c);
    assert_int_equal(c->n[1].applied, 2);
    assert_int_equal(h_status(c, 1).role, PX_FOLLOWER);

    /* storage works again: a new replica from the store rejoins */
    c->n[1].hold = false;
    h_restart(c, 1);
    assert_false(h_status(c, 1).suspended);
    for (int i = 0; i < 40 && c->n[1].applied < c->n[other].applied; i++) {
        c->now += 20;
        for (uint32_t id = 1; id <= 3; id++)
            h_tick(c, id);
        h_run(c);
    }
    assert_int_equal(c->n[1].applied, c->n[other].applied);
    h_propose(c, leader, 7, 2, "d");
    assert_true(h_count(c, PX_MSG_ACCEPT, leader, 1) >= 1);
    h_deliver(c, PX_MSG_ACCEPT, leader, 1);
    assert_int_equal(h_count(c, PX_MSG_ACCEPTED, 1, leader), 1);
    h_run(c);
    h_free(c);
}

/* A suspended follower: the leader keeps committing with the third
 * vote; a candidate's PREPARE gets no answer from it. */
static void test_suspended_follower_casts_no_vote(void **state)
{
    (void)state;
    cluster *c = h_cluster(3, tweak_eager);
    h_elect(c, 1);
    px_suspend(c->n[3].r);
    h_tick(c, 3);
    h_propose(c, 1, 5, 1, "a");
    h_run(c);
    c->now += 10;
    h_tick(c, 1);
    h_run(c);
    assert_int_equal(c->n[1].applied, 2);
    assert_int_equal(c->n[2].applied, 2);
    assert_int_equal(c->n[3].applied, 1);
    /* node 2 campaigns with node 1 cut off: node 3 cannot elect it */
    c->n[1].cut = true;
    for (int i = 0; i < 40; i++) {
        c->now += 50;
        h_tick(c, 2);
        h_tick(c, 3);
        h_run(c);
        assert_int_not_equal(h_status(c, 2).role, PX_LEADER);
        assert_int_not_equal(h_status(c, 3).role, PX_LEADER);
        assert_int_not_equal(h_status(c, 3).role, PX_CANDIDATE);
    }
    assert_true(h_stats(c, 2).elections_started > 0);
    assert_int_equal(h_stats(c, 3).elections_started, 0);
    h_free(c);
}

static void test_malformed_ignored(void **state)
{
    (void)state;
    cluster *c = h_cluster(3, NULL);
    static const uint8_t short_cp[8] = {1};
    px_entry bad[4] = {{.slot = 0}, {.slot = 2, .len = 4, .data = NULL},
                       {.slot = 1, .kind = 9},
                       {.slot = 1, .kind = PX_ENTRY_CHECKPOINT, .len = 8,
                        .data = short_cp}};   /* not (index, digest) */
    px_msg m = {.type = PX_MSG_ACCEPT, .from = 1, .to = 3, .ballot = {1, 1}};
    uint64_t ignored = 0;
    for (int i = 0; i < 4; i++) {
        m.n_entries = 1;
        m.entries = &bad[i];
        h_step(c, 3, (px_event){.type = PX_EV_RECEIVE, .u.msg = &m});
        assert_int_equal(h_stats(c, 3).msgs_ignored, ++ignored);
    }
    px_entry ok = {.slot = 1};
    m.entries = &ok;
    m.to = 2; /* wrong recipient */
    h_step(c, 3, (px_event){.type = PX_EV_RECEIVE, .u.msg = &m});
    m.to = 3;
    m.from = 99; /* unknown sender */
    h_step(c, 3, (px_event){.type = PX_EV_RECEIVE, .u.msg = &m});
    m.from = 1;
    m.ballot = (px_ballot){1, 2}; /* ballot not owned by the sender */
    h_step(c, 3, (px_event){.type = PX_EV_RECEIVE, .u.msg = &m});
    m.ballot = (px_ballot){1, 1};
    m.n_entries = 5000; /* too many entries */
    h_step(c, 3, (px_event){.type = PX_EV_RECEIVE, .u.msg = &m});
    m.n_entries = 1;
    m.type = 77;
    h_step(c, 3, (px_event){.type = PX_EV_RECEIVE, .u.msg = &m});
    assert_int_equal(h_stats(c, 3).msgs_ignored, ignored + 5);
    assert_int_equal(c->n[3].n_acc, 0);
    /* bad events are -EINVAL */
    px_output out;
    px_event ev = {.type = PX_EV_RECEIVE};
    assert_int_equal(px_step(c->n[3].r, &ev, &out), -EINVAL);
    ev.type = 99;
    assert_int_equal(px_step(c->n[3].r, &ev, &out), -EINVAL);
    h_free(c);
}

/* A ballot at the end of the round space cannot wedge elections: one
 * forged message per node with the largest round the replica once
 * accepted (2^62 - 1) used to leave every node a candidate forever (the
 * next round was malformed to every peer) and was persisted as the
 * promise.  Now a ballot more than PX_ROUND_WINDOW (2^20) above every
 * round seen is dropped and counted; a store that already holds such a
 * promise still elects; and with no round left a node stops campaigning
 * instead of overflowing. */
#define OLD_ROUND_MAX ((UINT64_C(1) << 62) - 1)
#define ROUND_WINDOW (UINT64_C(1) << 20)

static void forge(cluster *c, uint8_t type, uint32_t from, uint32_t to,
                  px_ballot b, px_ballot aux)
{
    px_msg m = {.type = type, .from = from, .to = to, .ballot = b,
                .aux_ballot = aux, .commit = 0};
    h_step(c, to, (px_event){.type = PX_EV_RECEIVE, .u.msg = &m});
}

static void commit_one(cluster *c, uint32_t leader, uint64_t client,
                       uint64_t seq)
{
    h_propose(c, leader, client, seq, "w");
    h_run(c);
    c->now += 60;
    for (uint32_t k = 1; k <= c->count; k++)
        h_tick(c, k);
    h_run(c);
    assert_true(h_log_has(&c->n[leader].log[c->n[leader].applied], client, seq));
}

static uint32_t h_count_queued_heartbeats(cluster *c)
{
    return h_count(c, PX_MSG_HEARTBEAT, 0, 0);
}

/* reads.c invariant 6: a leader whose last heartbeat round a quorum
 * echoed serves reads at once (the leader's and a follower's) without a
 * round; cut off, its lease runs out before anyone else can be elected,
 * so it never serves a read that misses a newer leader's commit. */
static void test_read_lease(void **state)
{
    (void)state;
    cluster *c = h_cluster(3, NULL);   /* etmin 100 ms: lease 50 ms */
    h_elect(c, 1);
    assert_true(h_status(c, 1).read_lease);
    h_step(c, 1, (px_event){.type = PX_EV_READ_INDEX, .u.read_token = 42});
    assert_int_equal(c->n[1].n_reads, 1);          /* at once */
    assert_int_equal(c->n[1].reads[0].status, 0);
    assert_int_equal(h_count_queued_heartbeats(c), 0);
    /* a follower's read: one FORWARD and its answer, no heartbeat round */
    h_step(c, 2, (px_event){.type = PX_EV_READ_INDEX, .u.read_token = 43});
    h_deliver(c, PX_MSG_FORWARD, 2, 1);
    assert_int_equal(h_count_queued_heartbeats(c), 0);
    h_deliver(c, PX_MSG_FORWARD, 1, 2);
    assert_int_equal(c->n[2].n_reads, 1);
    assert_int_equal(c->n[2].reads[0].status, 0);
    h_run(c);
    /* the leader is cut off right after a confirmed round */
    c->now += 10;
    h_tick(c, 1);
    h_run(c);
    c->n[1].cut = true;
    /* the others wait out their stickiness, elect one of them (node 2
     * got the last heartbeat: it answered the read, then asked for a
     * lease, so node 3's timer usually runs out first), commit */
    uint32_t nl = 0;
    for (int i = 0; i < 40 && !nl; i++) {
        c->now += 10;
        h_tick(c, 2);
        h_tick(c, 3);
        h_run(c);
        nl = h_status(c, 2).role == PX_LEADER ? 2
           : h_status(c, 3).role == PX_LEADER ? 3 : 0;
    }
    assert_true(nl != 0);
    commit_one(c, nl, 9, 1);
    uint64_t newer = c->n[nl].applied;
    /* node 1 may still think it leads; whatever it answers now must not
     * miss node 2's commit */
    c->n[1].n_reads = 0;
    h_step(c, 1, (px_event){.type = PX_EV_READ_INDEX, .u.read_token = 44});
    for (int i = 0; i < 300 && c->n[1].n_reads == 0; i++) {   /* <= 3 s */
        c->now += 10;
        h_tick(c, 1);
        h_run(c);
    }
    assert_int_equal(c->n[1].n_reads, 1);
    assert_true(c->n[1].reads[0].status != 0 ||
                c->n[1].reads[0].index >= newer);
    h_free(c);
}

/* px_read_now answers, without a step, what a READ_INDEX would: the same
 * index while the leader's lease holds; nothing on a follower, once the
 * lease ran out, or for a time before the replica's last event. */
static void test_read_now_agrees_with_the_lease(void **state)
{
    (void)state;
    cluster *c = h_cluster(3, NULL);   /* etmin 100 ms: lease 50 ms */
    h_elect(c, 1);
    commit_one(c, 1, 5, 1);
    h_run(c);
    uint64_t idx = 0;
    assert_true(px_read_now(c->n[1].r, c->now, &idx));
    h_step(c, 1, (px_event){.type = PX_EV_READ_INDEX, .u.read_token = 7});
    assert_int_equal(c->n[1].n_reads, 1);
    assert_int_equal(c->n[1].reads[0].status, 0);
    assert_int_equal(c->n[1].reads[0].index, idx);
    assert_int_equal(idx, h_status(c, 1).commit_index);
    assert_false(px_read_now(c->n[1].r, c->now - 1, &idx));
    assert_false(px_read_now(c->n[2].r, c->now, &idx));
    assert_false(px_read_now(c->n[3].r, c->now, &idx));
    /* a follower's read round is out from its FORWARD to the answer */
    assert_false(px_read_round_out(c->n[2].r));
    h_step(c, 2, (px_event){.type = PX_EV_READ_INDEX, .u.read_token = 8});
    assert_true(px_read_round_out(c->n[2].r));
    assert_false(px_read_round_out(c->n[1].r));
    h_deliver(c, PX_MSG_FORWARD, 2, 1);
    h_deliver(c, PX_MSG_FORWARD, 1, 2);
    assert_int_equal(c->n[2].n_reads, 1);
    assert_false(px_read_round_out(c->n[2].r));
    /* no round echoed for 60 ms: the 50 ms lease is over */
    c->n[1].cut = true;
    assert_false(px_read_now(c->n[1].r, c->now + 60, &idx));
    h_free(c);
}


/* reads.c invariant 8: a follower that served a read asks for a lease;
 * once granted, its reads need no message, and until the grant ends the
 * leader commits nothing the holder has not accepted. */
static cluster *h_lease_to_2(void)
{
    cluster *c = h_cluster(3, NULL);   /* etmin 100 ms: lease 50 ms */
    h_elect(c, 1);
    commit_one(c, 1, 5, 1);
    h_step(c, 2, (px_event){.type = PX_EV_READ_INDEX, .u.read_token = 1});
    assert_int_equal(h_count(c, PX_MSG_FORWARD, 2, 1), 1);   /* no lease */
    h_run(c);
    assert_int_equal(c->n[2].n_reads, 1);
    for (int i = 0; i < 5; i++) {
        c->now += 10;
        for (uint32_t k = 1; k <= 3; k++)
            h_tick(c, k);
        h_run(c);
    }
    assert_true(h_status(c, 2).follower_lease);
    assert_false(h_status(c, 3).follower_lease);   /* it asked for none */
    assert_int_equal(h_status(c, 1).leases_granted, 1);
    return c;
}

static void test_follower_lease_reads_without_a_message(void **state)
{
    (void)state;
    cluster *c = h_lease_to_2();
    uint64_t commit = h_status(c, 1).commit_index;
    c->n[2].n_reads = 0;
    uint64_t idx = 0;
    assert_true(px_read_now(c->n[2].r, c->now, &idx));
    assert_true(idx >= commit);
    h_step(c, 2, (px_event){.type = PX_EV_READ_INDEX, .u.read_token = 2});
    assert_int_equal(c->n[2].n_reads, 1);
    assert_int_equal(c->n[2].reads[0].status, 0);
    assert_int_equal(c->n[2].reads[0].index, idx);
    assert_int_equal(h_count(c, PX_MSG_FORWARD, 2, 1), 0);
    assert_int_equal(h_stats(c, 2).lease_reads, 1);
    /* the holder is cut off: a quorum (1 and 3) accepts, the leader
     * commits nothing until the grant it recorded ends */
    c->n[2].cut = true;
    h_propose(c, 1, 5, 2, "x");
    h_run(c);
    assert_int_equal(h_status(c, 1).commit_index, commit);
    uint64_t waited = 0;
    while (h_status(c, 1).commit_index == commit && waited < 200) {
        c->now += 5;
        waited += 5;
        h_tick(c, 1);
        h_tick(c, 3);
        h_run(c);
    }
    assert_true(h_status(c, 1).commit_index > commit);
    assert_true(waited > 0 && waited <= 50);   /* at most the lease */
    /* the holder's own lease ended before the leader's record of it */
    h_tick(c, 2);
    assert_false(h_status(c, 2).follower_lease);
    assert_false(px_read_now(c->n[2].r, c->now, &idx));
    h_free(c);
}

static void h_heartbeat_third_of_lease(px_options *o)
{
    o->heartbeat_interval_ms = 17;   /* as the defaults: 50 ms, lease 150 */
}

/* reads.c invariant 8, renewal: a follower that keeps serving reads and
 * sees no write keeps its lease (it asks outright before the lease runs
 * out, the leader answers at once), at a bounded cost in messages.
 * Asked only in heartbeat answers, the grant came with the next heartbeat
 * and ended about when it arrived: the lease held a fraction of the time. */
static void test_a_reading_follower_keeps_its_lease(void **state)
{
    (void)state;
    cluster *c = h_cluster(3, h_heartbeat_third_of_lease);
    h_elect(c, 1);
    commit_one(c, 1, 5, 1);
    h_step(c, 2, (px_event){.type = PX_EV_READ_INDEX, .u.read_token = 1});
    h_run(c);
    uint32_t held = 0, ms = 600;
    uint64_t grants = h_stats(c, 1).lease_grants;
    uint64_t rx = h_stats(c, 1).msgs_received;
    for (uint32_t t = 0; t < ms; t++) {
        c->now += 1;
        px_read_local(c->n[2].r, c->now);   /* node 2 serves reads */
        for (uint32_t k = 1; k <= 3; k++)
            h_tick(c, k);
        h_run(c);
        held += t >= 50 && h_status(c, 2).follower_lease;
    }
    assert_true(held >= (ms - 50) * 95 / 100);
    assert_false(h_status(c, 3).follower_lease);   /* it asked for none */
    /* besides the heartbeats' answers, an ask at most every lease_ms / 8
     * (6 ms here), each granted once */
    assert_true(h_stats(c, 1).msgs_received - rx <= ms / 6 + 2 * ms / 17 + 8);
    assert_true(h_stats(c, 1).lease_grants - grants <= ms / 6 + ms / 17 + 4);
    h_free(c);
}

/* leader.c invariant 9, learner.c invariant 6: a forwarder commits its
 * request on the leader's own vote once its own acceptance is durable,
 * never before; the leader's read points cover what it voted for; the
 * vote waits for every other lease holder; with five voters (a quorum of
 * three) no vote goes out. */
static void test_the_leaders_vote_commits_on_the_forwarder(void **state)
{
    (void)state;
    cluster *c = h_cluster(3, tweak_eager);
    h_elect(c, 1);
    commit_one(c, 1, 5, 1);
    h_run(c);
    uint64_t base = c->n[3].applied, lead = c->n[1].applied;
    c->n[3].hold = true;   /* its acceptances wait for the disk */
    h_propose(c, 3, 9, 1, "fwd");
    assert_int_equal(h_deliver(c, PX_MSG_FORWARD, 3, 1), 1);
    assert_int_equal(h_count(c, PX_MSG_ACCEPTED, 1, 3), 1);   /* the vote */
    assert_int_equal(h_deliver(c, PX_MSG_ACCEPTED, 1, 3), 1);
    assert_true(h_deliver(c, PX_MSG_ACCEPT, 1, 3) >= 1);
    assert_int_equal(c->n[3].applied, base);   /* accepted, not durable */
    h_release(c, 3);
    c->n[3].hold = false;
    assert_int_equal(c->n[3].applied, base + 1);
    assert_true(h_log_has(&c->n[3].log[base + 1], 9, 1));
    assert_int_equal(c->n[1].applied, lead);   /* the leader does not know */
    uint64_t idx = 0;
    assert_true(px_read_now(c->n[1].r, c->now, &idx));
    assert_true(idx >= base + 1);              /* its reads wait for it */
    h_run(c);
    assert_int_equal(c->n[1].applied, lead + 1);
    h_free(c);

    /* a lease holder (node 2) cut off: no vote until its grant ended */
    c = h_lease_to_2();
    h_run(c);
    c->n[2].cut = true;
    h_propose(c, 3, 9, 1, "fwd");
    h_deliver(c, PX_MSG_FORWARD, 3, 1);
    assert_int_equal(h_count(c, PX_MSG_ACCEPTED, 1, 3), 0);
    h_free(c);

    c = h_cluster(5, tweak_eager);
    h_elect(c, 1);
    commit_one(c, 1, 5, 1);
    h_run(c);
    h_propose(c, 3, 9, 1, "fwd");
    assert_int_equal(h_deliver(c, PX_MSG_FORWARD, 3, 1), 1);
    assert_int_equal(h_count(c, PX_MSG_ACCEPTED, 1, 3), 0);
    h_run(c);
    assert_true(h_log_has(&c->n[3].log[c->n[3].applied], 9, 1));
    h_free(c);
}

/* Cut node 2 (a lease holder) off and write through node 1 until the
 * write commits without it (once node 2's grant ended): the new commit
 * index. */
static uint64_t h_commit_without_2(cluster *c)
{
    c->n[2].cut = true;
    uint64_t commit = h_status(c, 1).commit_index;
    h_propose(c, 1, 5, 2, "x");
    for (int i = 0; i < 40 && h_status(c, 1).commit_index == commit; i++) {
        c->now += 5;
        h_tick(c, 1);
        h_tick(c, 3);
        h_run(c);
    }
    uint64_t newer = h_status(c, 1).commit_index;
    assert_true(newer > commit);
    return newer;
}

/* reads.c invariant 8: a lease runs from the holder's own ask, so a
 * grant that arrives late (after the leader stopped waiting for the
 * holder and committed without it) gives no lease that could read what
 * the holder lacks. */
static void test_a_late_grant_reads_nothing_stale(void **state)
{
    (void)state;
    cluster *c = h_lease_to_2();
    px_msg *late = NULL;
    for (int i = 0; i < 20 && !late; i++) {
        c->now += 5;
        h_tick(c, 1);
        for (uint32_t k = 0; k < c->nq; k++)
            if (h_match(c->q[k], 0, 1, 2) && c->q[k]->lease_ms) {
                late = px_msg_copy(c->q[k]);
                break;
            }
        h_run(c);
    }
    assert_non_null(late);
    /* the holder is cut off; the leader waits out its grant, commits */
    uint64_t newer = h_commit_without_2(c);
    /* the grant made before arrives only now */
    c->n[2].cut = false;
    h_step(c, 2, (px_event){.type = PX_EV_RECEIVE, .u.msg = late});
    free(late);
    h_drop(c, 0, 0, 0);
    uint64_t idx = 0;
    if (px_read_now(c->n[2].r, c->now, &idx))
        assert_true(idx >= newer);
    h_free(c);
}

static bool h_depends_always(void *arg, const uint8_t *data, uint32_t len)
{
    (void)arg;
    (void)data;
    (void)len;
    return true;
}

/* reads.c invariant 8a: a grant carries the leader's commit index, and a
 * holder that lacks committed slots (its lease had lapsed, what it
 * missed has not reached it) reads nothing before them. */
static void test_a_grant_makes_the_holder_wait_for_what_it_lacks(void **state)
{
    (void)state;
    cluster *c = h_lease_to_2();
    uint64_t newer = h_commit_without_2(c);
    /* back, but whatever would bring it the new slot is lost */
    c->n[2].cut = false;
    bool leased = false;
    for (int i = 0; i < 40 && !leased; i++) {
        c->now += 5;
        for (uint32_t k = 1; k <= 3; k++)
            h_tick(c, k);
        for (int n = 0; n < 10000 && c->nq; n++) {
            h_drop(c, PX_MSG_ACCEPT, 1, 2);
            h_drop(c, PX_MSG_CATCHUP, 1, 2);
            h_drop(c, PX_MSG_CATCHUP_REQ, 2, 1);
            if (c->nq)
                h_deliver_at(c, 0);
        }
        leased = h_status(c, 2).follower_lease;
    }
    assert_true(leased);
    assert_true(h_status(c, 2).commit_index < newer);
    uint64_t idx = 0;
    assert_true(px_read_now(c->n[2].r, c->now, &idx));
    assert_true(idx >= newer);
    assert_true(px_read_now_for(c->n[2].r, c->now, h_depends_always, NULL,
                                &idx));
    assert_true(idx >= newer);
    h_free(c);
}

/* acceptor.c invariant 9: a node whose grants may hold promises nobody,
 * so no quorum with it commits what the holder lacks. */
static void test_granter_promises_nobody_while_its_grants_hold(void **state)
{
    (void)state;
    cluster *c = h_lease_to_2();
    px_ballot b = h_status(c, 1).ballot;
    /* node 1 learns of a higher ballot and follows node 3 */
    forge(c, PX_MSG_HEARTBEAT, 3, 1, (px_ballot){b.round + 1, 3},
          (px_ballot){0, 0});
    assert_int_equal(h_status(c, 1).role, PX_FOLLOWER);
    h_drop(c, 0, 0, 0);
    forge(c, PX_MSG_PREPARE, 3, 1, (px_ballot){b.round + 2, 3},
          (px_ballot){0, 0});
    assert_int_equal(h_count(c, PX_MSG_PROMISE, 1, 3), 0);
    /* once every grant it made has ended, it answers */
    c->now += 60;
    h_tick(c, 1);
    h_drop(c, 0, 0, 0);
    forge(c, PX_MSG_PREPARE, 3, 1, (px_ballot){b.round + 3, 3},
          (px_ballot){0, 0});
    assert_int_equal(h_count(c, PX_MSG_PROMISE, 1, 3), 1);
    h_free(c);
}

static void test_forged_ballot_cannot_wedge_elections(void **state)
{
    (void)state;
    cluster *c = h_cluster(3, NULL);
    h_elect(c, 1);
    commit_one(c, 1, 5, 1);
    uint64_t round = h_status(c, 1).ballot.round;
    for (uint32_t to = 1; to <= 3; to++) {
        uint32_t from = to % 3 + 1;
        px_ballot top = {OLD_ROUND_MAX, from};
        uint64_t refused = h_stats(c, to).ballots_refused;
        forge(c, PX_MSG_HEARTBEAT, from, to, top, (px_ballot){0, 0});
        forge(c, PX_MSG_PREPARE, from, to, top, (px_ballot){0, 0});
        forge(c, PX_MSG_ACCEPT, from, to, top, (px_ballot){0, 0});
        forge(c, PX_MSG_REJECT, from, to, (px_ballot){round, 1}, top);
        forge(c, PX_MSG_HEARTBEAT_ACK, from, to, top, (px_ballot){0, 0});
        /* just beyond the window, too */
        forge(c, PX_MSG_HEARTBEAT, from, to,
              (px_ballot){round + ROUND_WINDOW + 1, from}, (px_ballot){0, 0});
        assert_int_equal(h_stats(c, to).ballots_refused, refused + 6);
        assert_true(c->n[to].d_promise.round <= round);
    }
    h_run(c);
    assert_int_equal(h_status(c, 1).role, PX_LEADER);
    /* the leader fails: another one is elected and commits */
    c->n[1].down = true;
    for (int i = 0; i < 50 && h_status(c, 2).role != PX_LEADER &&
                    h_status(c, 3).role != PX_LEADER; i++) {
        c->now += 50;
        h_tick(c, 2);
        h_tick(c, 3);
        h_run(c);
    }
    uint32_t leader = h_status(c, 2).role == PX_LEADER ? 2 : 3;
    assert_int_equal(h_status(c, leader).role, PX_LEADER);
    assert_true(h_status(c, leader).ballot.round < round + 10);
    commit_one(c, leader, 5, 2);
    /* a ballot within the window is a legitimate later round: followed */
    uint32_t follower = 5 - leader;
    forge(c, PX_MSG_HEARTBEAT, 1, follower,
          (px_ballot){round + ROUND_WINDOW / 2, 1}, (px_ballot){0, 0});
    assert_int_equal(c->n[follower].d_promise.round, round + ROUND_WINDOW / 2);
    h_free(c);

    /* what the old code persisted: every promise at the top of the old
     * round space (a node's own next ballot, 2^62, included) */
    c = h_cluster(3, NULL);
    for (uint32_t k = 1; k <= 3; k++) {
        px_destroy(c->n[k].r);
        c->n[k].d_promise = (px_ballot){k == 1 ? OLD_ROUND_MAX + 1 : OLD_ROUND_MAX, k};
        px_restore rs = {.promise = c->n[k].d_promise};
        h_start(c, k, &rs);
    }
    h_elect(c, 2);
    assert_true(h_status(c, 2).ballot.round > OLD_ROUND_MAX + 1);
    commit_one(c, 2, 6, 1);
    h_free(c);

    /* no round left: the node does not campaign, nothing overflows */
    c = h_cluster(1, NULL);
    px_destroy(c->n[1].r);
    px_restore top = {.promise = {(UINT64_C(1) << 63) - 1, 1}};
    h_start(c, 1, &top);
    h_tick(c, 1);
    c->now += 1000;
    h_tick(c, 1);
    assert_int_not_equal(h_status(c, 1).role, PX_LEADER);
    assert_true(h_stats(c, 1).rounds_exhausted > 0);
    assert_int_equal(c->n[1].d_promise.round, 0);   /* nothing persisted */
    /* a promise at or above 2^63 is a damaged store: refused */
    px_replica *r = NULL;
    px_restore bad = {.promise = {UINT64_C(1) << 63, 1}};
    assert_int_equal(px_create(&c->n[1].opt, &bad, &r), -EINVAL);
    h_free(c);
}

/* Regression (sim crash seed 2): a candidate whose commit index is behind
 * a promiser's, and who gets no values for the slots in between (the
 * promiser restarted and retains nothing below its applied index), must
 * not fill those chosen slots with NOOPs: it aborts and catches up. */
static void test_regression_recover_past_peer_commit(void **state)
{
    (void)state;
    cluster *c = h_cluster(3, NULL);
    px_destroy(c->n[1].r);
    px_restore rs = {.applied_index = 2};
    h_start(c, 1, &rs);
    c->n[1].applied = 2;
    c->n[3].down = true;
    h_tick(c, 1);
    c->now += 1000;
    h_tick(c, 1); /* probe */
    assert_int_equal(h_count(c, PX_MSG_PREPARE, 1, 2), 1);
    px_ballot b = c->q[0]->ballot;
    h_drop(c, 0, 0, 0);
    px_msg grant = {.type = PX_MSG_PROMISE, .from = 2, .to = 1, .ballot = b,
                    .aux = 1};
    h_step(c, 1, (px_event){.type = PX_EV_RECEIVE, .u.msg = &grant});
    assert_int_equal(h_count(c, PX_MSG_PREPARE, 1, 2), 1);
    px_msg *prep = NULL;
    for (uint32_t k = 0; k < c->nq; k++)
        if (c->q[k]->type == PX_MSG_PREPARE && c->q[k]->to == 2)
            prep = c->q[k];
    assert_non_null(prep);
    assert_int_equal(prep->slot, 3);
    px_msg promise = {.type = PX_MSG_PROMISE, .from = 2, .to = 1,
                      .ballot = prep->ballot, .slot = 3, .aux = UINT64_MAX,
                      .aux_ballot = {1, 0}, .commit = 5};
    h_drop(c, 0, 0, 0);
    h_step(c, 1, (px_event){.type = PX_EV_RECEIVE, .u.msg = &promise});
    assert_int_not_equal(h_status(c, 1).role, PX_LEADER);
    assert_int_equal(h_count(c, PX_MSG_ACCEPT, 1, 0), 0);
    assert_int_equal(h_count(c, PX_MSG_CATCHUP_REQ, 1, 2), 1);
    assert_int_equal(c->n[1].applied, 2);
    h_free(c);
}

/* ---------------------------------------------------------------- chaos */

/* The host side of a snapshot transfer: copy the source's applied state. */
static void h_snapshots(cluster *c, uint32_t nv)
{
    for (uint32_t id = 1; id <= nv; id++) {
        hnode *h = &c->n[id];
        uint32_t from = h->snap_from;
        h->snap_from = 0;
        if (!from || h->down || c->n[from].applied <= h->applied)
            continue;
        hnode *src = &c->n[from];
        for (uint64_t s = h->applied + 1; s <= src->applied; s++) {
            free(h->log[s].data);
            h->log[s] = src->log[s];
            h->log[s].data = malloc(src->log[s].len + 1);
            if (src->log[s].len)
                memcpy(h->log[s].data, src->log[s].data, src->log[s].len);
        }
        px_event ev = {.type = PX_EV_SNAPSHOT_INSTALLED};
        ev.u.snapshot.index = src->applied;
        ev.u.snapshot.members = src->members;
        h->applied = src->applied;
        h->members = src->members;
        if (h->chain_base < src->applied)
            h->chain_base = src->applied;
        h_step(c, id, ev);
    }
}

static void chaos_run_nomem(uint32_t nv, uint64_t seed, int steps,
                            uint64_t one_in)
{
    cluster *c = h_cluster(nv, NULL);
    nomem_one_in = one_in;
    nomem_rng = seed;
    c->rng = seed;
    uint64_t next_seq[8] = {0};
    for (int i = 0; i < steps; i++) {
        uint64_t x = h_rand(c) % 100;
        uint32_t id = 1 + (uint32_t)(h_rand(c) % nv);
        if (x < 30 && c->nq) {
            uint32_t k = (uint32_t)(h_rand(c) % c->nq);
            uint64_t f = h_rand(c) % 10;
            if (f == 0) { /* drop */
                free(c->q[k]);
                memmove(&c->q[k], &c->q[k + 1],
                        (c->nq - k - 1) * sizeof(px_msg *));
                c->nq--;
            } else if (f == 1 && c->nq < NETQ) { /* duplicate */
                c->q[c->nq++] = px_msg_copy(c->q[k]);
                h_deliver_at(c, k);
            } else {
                h_deliver_at(c, k);
            }
        } else if (x < 50) {
            c->now += h_rand(c) % 30;
            h_tick(c, id);
        } else if (x < 60) {
            uint64_t client = h_rand(c) % 4;
            h_propose(c, id, client + 1, ++next_seq[client], "op");
        } else if (x < 62) {
            c->n[id].hold = !c->n[id].hold;
            if (!c->n[id].hold)
                h_release(c, id);
        } else if (x < 63) {
            h_restart(c, id); /* reports held are lost; durable kept */
        } else if (x < 64) {
            c->n[id].cut = !c->n[id].cut;
        } else if (x < 66) {
            /* the host compacts its chain up to what it applied */
            c->n[id].chain_base = c->n[id].applied;
            px_set_chain_base(c->n[id].r, c->n[id].applied);
        } else if (c->nq) {
            h_deliver_at(c, 0);
        }
        h_snapshots(c, nv);
    }
    /* heal and let it settle: every node must converge */
    nomem_one_in = 0;
    for (uint32_t id = 1; id <= nv; id++) {
        c->n[id].cut = false;
        c->n[id].hold = false;
        h_release(c, id);
    }
    for (int i = 0; i < 400; i++) {
        c->now += 10;
        for (uint32_t id = 1; id <= nv; id++)
            h_tick(c, id);
        h_run(c);
        h_snapshots(c, nv);
    }
    uint32_t leaders = 0;
    uint64_t applied = c->n[1].applied;
    for (uint32_t id = 1; id <= nv; id++) {
        leaders += h_status(c, id).role == PX_LEADER;
        assert_int_equal(c->n[id].applied, applied);
        assert_int_equal(h_status(c, id).pending_requests, 0);
    }
    assert_int_equal(leaders, 1);
    assert_true(applied > 0);
    if (getenv("PX_CHAOS_VERBOSE")) {
        px_stats st = h_stats(c, 1);
        uint64_t reqs = 0;
        for (uint64_t s = 1; s <= applied; s++)
            if (c->n[1].log[s].kind == PX_ENTRY_BATCH)
                reqs += px_batch_count(c->n[1].log[s].data, c->n[1].log[s].len);
        fprintf(stderr, "chaos n=%u seed=%llu applied=%llu requests=%llu "
                "elections(node1)=%llu ignored(node1)=%llu\n", nv,
                (unsigned long long)seed, (unsigned long long)applied,
                (unsigned long long)reqs,
                (unsigned long long)st.elections_started,
                (unsigned long long)st.msgs_ignored);
    }
    h_free(c);
}

static void chaos_run(uint32_t nv, uint64_t seed, int steps)
{
    chaos_run_nomem(nv, seed, steps, 0);
}

/* A CATCHUP with more entries than the log holds (a host streams up to
 * 256 chain blocks to a peer that lags behind what the leader retains):
 * the replica learns what fits, hands every learned slot out once, step
 * succeeds, and it asks for the rest.  Before, the entries that did not
 * fit failed the step with -ENOMEM after commit had moved, so the host
 * dropped the output and never applied the slots learned in it. */
static void test_catchup_larger_than_the_log(void **state)
{
    (void)state;
    px_options o;
    h_opts(&o, 1, 3);
    o.retain_slots = 4;
    o.window_slots = 4;
    px_replica *r;
    assert_int_equal(px_create(&o, NULL, &r), 0);
    enum { N = 300 };   /* the log holds 128 slots here */
    px_entry e[N];
    static const uint8_t v[] = "v";
    for (uint32_t i = 0; i < N; i++)
        e[i] = (px_entry){ .slot = i + 1, .ballot = { 1, 2 }, .time_ms = 7,
                           .kind = PX_ENTRY_NOOP, .len = 1, .data = v };
    uint64_t applied = 0, now = 1;
    for (int round = 0; round < 50 && applied < N; round++) {
        px_msg m = { .type = PX_MSG_CATCHUP, .from = 2, .to = 1,
                     .ballot = { 1, 2 }, .slot = applied + 1, .commit = N,
                     .n_entries = N - (uint32_t)applied,
                     .entries = e + applied };
        px_event ev = { .type = PX_EV_RECEIVE, .now_ms = now++ };
        ev.u.msg = &m;
        px_output out;
        assert_int_equal(px_step(r, &ev, &out), 0);
        assert_true(out.n_committed > 0);
        for (uint32_t i = 0; i < out.n_committed; i++)
            assert_int_equal(out.committed[i].slot, ++applied);
        if (applied < N) {
            bool asked = false;
            for (uint32_t i = 0; i < out.n_msgs; i++)
                asked |= out.msgs[i].type == PX_MSG_CATCHUP_REQ &&
                         out.msgs[i].slot == applied + 1;
            assert_true(asked);
        }
    }
    assert_int_equal(applied, N);
    px_destroy(r);
}

static void test_chaos(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 20; seed++)
        chaos_run(3, seed, 3000);
    for (uint64_t seed = 100; seed <= 105; seed++)
        chaos_run(5, seed, 3000);
    chaos_run(7, 777, 3000);
}

/* px.h: -ENOMEM from px_step means "discard this output and the replica,
 * recreate it from the durable state".  Allocations fail at random inside
 * px_step (about one in 30): agreement holds on every slot and the
 * cluster converges.  PX_NOMEM_KEEP_GOING=1 runs the old contract (carry
 * the output out and keep the replica), which breaks agreement. */
static void test_failing_allocations(void **state)
{
    (void)state;
    nomem_keep_going = getenv("PX_NOMEM_KEEP_GOING") != NULL;
    nomem_failed = nomem_steps = 0;
    for (uint64_t seed = 1; seed <= 12; seed++)
        chaos_run_nomem(3, seed, 3000, 30);
    for (uint64_t seed = 50; seed <= 52; seed++)
        chaos_run_nomem(5, seed, 3000, 30);
    fprintf(stderr, "failing allocations: %llu failed, %llu steps returned "
            "-ENOMEM\n", (unsigned long long)nomem_failed,
            (unsigned long long)nomem_steps);
    assert_true(nomem_steps > 100);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_voter),
        cmocka_unit_test(test_three_node_commit_after_persist),
        cmocka_unit_test(test_recovery_and_noop_fill),
        cmocka_unit_test(test_stale_ballot_rejected),
        cmocka_unit_test(test_leader_stickiness),
        cmocka_unit_test(test_a_stalled_cluster_keeps_its_leader),
        cmocka_unit_test(test_a_late_follower_still_campaigns),
        cmocka_unit_test(test_forwarding),
        cmocka_unit_test(test_commit_notice),
        cmocka_unit_test(test_thrifty_phase2),
        cmocka_unit_test(test_batching_window_full),
        cmocka_unit_test(test_follower_commit_rule),
        cmocka_unit_test(test_snapshot_needed),
        cmocka_unit_test(test_catchup_from_chain_above_base),
        cmocka_unit_test(test_checkpoint_entry),
        cmocka_unit_test(test_retained_bytes_bounded),
        cmocka_unit_test(test_resend_backs_off),
        cmocka_unit_test(test_forward_backs_off),
        cmocka_unit_test(test_read_index),
        cmocka_unit_test(test_read_lease),
        cmocka_unit_test(test_read_now_agrees_with_the_lease),
        cmocka_unit_test(test_follower_lease_reads_without_a_message),
        cmocka_unit_test(test_the_leaders_vote_commits_on_the_forwarder),
        cmocka_unit_test(test_a_reading_follower_keeps_its_lease),
        cmocka_unit_test(test_granter_promises_nobody_while_its_grants_hold),
        cmocka_unit_test(test_a_late_grant_reads_nothing_stale),
        cmocka_unit_test(test_a_grant_makes_the_holder_wait_for_what_it_lacks),
        cmocka_unit_test(test_read_lease_restarted_follower),
        cmocka_unit_test(test_follower_reads_share_one_round),
        cmocka_unit_test(test_follower_read_answer_from_before_a_restart),
        cmocka_unit_test(test_restart_never_reuses_ballot),
        cmocka_unit_test(test_lost_acceptor_state_recovers),
        cmocka_unit_test(test_leader_deposed_by_recovery_campaigns_at_once),
        cmocka_unit_test(test_suspended_replica_neither_leads_nor_votes),
        cmocka_unit_test(test_suspended_follower_casts_no_vote),
        cmocka_unit_test(test_malformed_ignored),
        cmocka_unit_test(test_forged_ballot_cannot_wedge_elections),
        cmocka_unit_test(test_regression_recover_past_peer_commit),
        cmocka_unit_test(test_catchup_larger_than_the_log),
        cmocka_unit_test(test_chaos),
        cmocka_unit_test(test_failing_allocations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
