/*
 * regressions.c - owns the table of named regression seeds.
 *
 * Every seed that once exposed a bug (in the replica, the state machine or
 * the simulator itself) stays here under a name saying what it caught, and
 * runs on every `build/sim --seeds N` invocation before the random seeds.
 * An entry is expected to pass once its bug is fixed.
 *
 * Invariants:
 *   1. Entries are never removed, only added: a fixed bug must stay fixed.
 *   2. An entry fixes seed, cluster size and fault profile explicitly, so
 *      changing how --seeds derives them does not change what it replays.
 *      What a seed replays does change when the harness draws its random
 *      numbers differently (new fault kinds, new client choices): after such
 *      a change, re-find a seed that shows each bug (with the bug
 *      re-introduced or from the old failing output) and update the entry.
 */
#include "sim.h"

#include <inttypes.h>
#include <string.h>

typedef struct sim_regression {
    const char *name;
    uint64_t seed;
    uint32_t nodes;
    const char *profile;
} sim_regression;

static const sim_regression sim_regressions[] = {
    /* A new leader's phase 1 counted promises from acceptors that no
     * longer hold the slots at or below their commit index (restarted from
     * the applied state, or just installed a snapshot) and filled those
     * slots with no-ops over chosen values ("AGREEMENT: slot 17 chosen
     * twice").  Found at seeds 540/3/crash, 55/5/chaos, 15/3/chaos of an
     * earlier harness; these seeds hit the same precondition (a promise
     * with commit >= its slot and no entries) most often now. */
    {"noop-over-chosen-restarted-acceptor", 15, 3, "crash"},
    {"noop-over-chosen-snapshot-acceptor", 14, 5, "chaos"},
    {"noop-over-chosen-three-chaos", 15, 3, "chaos"},
    /* The session table, full for a client (64 results), raised the
     * client's floor above a request that was still unanswered, so its
     * first commit was skipped as FORGOTTEN (-EALREADY): a lost write. */
    {"session-floor-forgets-unapplied", 324, 1, "chaos"},
    /* A new leader granted read index = its commit index right after
     * phase 1, before re-committing the accepted values phase 1 recovered
     * above it.  When crashes cost every node its unsynced chain tail, the
     * slots there (committed and acknowledged earlier) are only in the
     * acceptor stores, so the read misses acknowledged writes: stale read,
     * "LINEARIZABILITY ... NOT linearizable". */
    {"read-index-before-recovered-slots-commit", 2246, 3, "crash"},
    {"read-index-before-recovered-slots-chaos", 1065, 3, "chaos"},
    /* A node that lost its acceptor store (or was rolled back to an older
     * copy of it) voted at once with the promises and accepted values it
     * had forgotten: "AGREEMENT: slot N chosen twice" at these seeds until
     * it recovered from every other voter first (consensus/recovery.c).
     * Seeds 21, 34 and 42 showed it until the simulator ran the
     * production host on a fake disk; re-found with px_begin_recovery
     * made a no-op: 1, 49, 71 (12 of 300 3-node amnesia seeds fail). */
    {"lost-acceptor-state-votes-at-once-1", 1, 3, "amnesia"},
    {"lost-acceptor-state-votes-at-once-49", 49, 3, "amnesia"},
    {"lost-acceptor-state-votes-at-once-71", 71, 3, "amnesia"},
    /* One forged message per node with ballot round 2^62 - 1 (then the
     * largest valid) left every node a candidate forever: the next round
     * was malformed to every peer, and the promise was persisted, so
     * restarts did not help (liveness: requests never finished).  Now a
     * ballot far above every round seen is dropped (consensus/msg.c). */
    {"forged-top-ballot-wedges-elections", 21, 3, "forged"},
    {"forged-top-ballot-five", 22, 5, "forged"},
    /* A node whose disk fails must stop leading, campaigning and voting
     * at once (px_suspend): a replica that went on leading or campaigning
     * there ("node N took part while its disk failed", role 2 or 1, or
     * messages put out) fails these seeds. */
    {"sick-disk-leader-keeps-leading", 1, 3, "sickdisk"},
    {"sick-disk-node-campaigns", 4, 3, "sickdisk"},
    /* A CATCHUP from the chain with more blocks than the receiving log
     * held failed the replica's step with -ENOMEM after commit had moved:
     * the host dropped the output, never applied those slots, and the
     * next commit left a gap ("chain append failed with -22").  Found by
     * the simulator running the production host (9 of 414 seeds). */
    {"catchup-larger-than-the-log-7", 59, 7, "amnesia"},
    {"catchup-larger-than-the-log-3", 361, 3, "amnesia"},
    /* Membership changes (the "members" profile).  A replica behind on
     * CONFIG entries dropped every message of a leader added after the
     * configuration it knew ("senders must be members"), so it never
     * caught up: "LEADER: node 5 sees leader 0" (msg.c now takes a
     * leader's messages from outside).  Seed 184 showed it until a paused
     * node stopped counting its pause against its leader (replica.c
     * invariant 5); re-found with the bug re-introduced: 875 (6 of 1,000
     * 5- and 7-node members seeds fail). */
    {"lagging-replica-drops-a-newer-leader", 875, 5, "members"},
    /* A follower restarted while its read-index requests were in flight
     * numbered its read rounds from 1 again; the leader's answer to an
     * old round 28, computed before a new read arrived, served that read
     * (new round 1 <= 28): a write acknowledged meanwhile was not seen
     * ("LINEARIZABILITY: key k3: NOT linearizable").  Rounds now start at
     * a base drawn for each incarnation (reads.c invariant 7). */
    {"read-answer-from-an-earlier-incarnation", 6510, 3, "members"},
    /* A bit flipped in the acceptor log was found and the log kept aside
     * as log.damaged, but writing the new log failed (ENOSPC); the next
     * start found no log and, with no chain yet, started as a new node
     * with promise 0, not recovering: a durable promise dropped ("DISK:
     * node 1 opened its stores without noticing the bit flipped").  A log
     * missing beside log.damaged is now that damage again (acceptor.c
     * invariant 9). */
    {"acceptor-salvage-stopped-after-the-rename", 4173, 3, "slowdisk"},
    /* A bit flipped in the zero space after the last record was cut as a
     * torn last write (correctly: it held nothing) by a start that an
     * injected EIO then stopped; the next start found a clean log and the
     * checker took the flip for unnoticed.  The checker now counts a bit
     * put back by an earlier attempt's cut as found. */
    {"acceptor-flip-cut-by-a-failed-start", 5660, 3, "crash"},
    /* A learner promoted by a CONFIG it had not learned yet ignored
     * PREPAREs (learners did not promise), and the new two-voter
     * configuration could elect nobody: "LIVENESS ... not done". */
    {"promoted-learner-never-promises", 307, 7, "members"},
    /* A PROMISE that carried a chosen CONFIG rebuilt the peer array while
     * px_on_promise held a pointer into it: the promise was counted for
     * another peer, a candidate won without a quorum and filled a chosen
     * slot with a no-op ("AGREEMENT: slot 23 chosen twice").  Found while
     * every non-voter answered PREPAREs; since a non-voter answers only a
     * candidate that committed more (members.c invariant 8), 3,000 seeds
     * with the bug put back found it no more, so these seeds now replay
     * the same configurations without showing it. */
    {"promise-counted-for-another-peer-7", 237, 7, "members"},
    {"promise-counted-for-another-peer-5", 102, 5, "members"},
    {"promise-counted-for-another-peer-7b", 124, 7, "members"},
    /* smoke entries: one per profile and cluster size */
    {"single-node-crash-restart", 11, 1, "crash"},
    {"three-calm", 12, 3, "calm"},
    {"five-lossy-reorder", 13, 5, "lossy"},
    {"seven-partitions", 14, 7, "partition"},
    {"three-slowdisk", 16, 3, "slowdisk"},
    {"five-sickdisk", 17, 5, "sickdisk"},
    /* A learner promoted back to voter crashed before it learned the
     * CONFIG's commit; restarted from its chain it was a learner again
     * and ignored the PREPAREs of the one other voter, which needed its
     * promise: no leader ever again (LIVENESS after healing).  Fixed by
     * consensus/members.c invariant 8.  Seeds 6, 16, 26, 32, 36, 38, 39,
     * 41, 46, 53, 58 of the first 60 showed it. */
    {"promoted-learner-behind-answers-prepare", 26, 3, "reconfig"},
    {"promoted-learner-behind-answers-prepare-2", 39, 3, "reconfig"},
    {"five-reconfig", 18, 5, "reconfig"},
    /* A candidate that learned a chosen CONFIG from a PROMISE, one that
     * made it a non-voter, stepped down in the middle of the PROMISE and
     * stored its remaining values into the reset election at offsets
     * from slot 0: never freed (LeakSanitizer under `make asan`). */
    {"config-learned-in-phase-1-ends-the-election", 29, 5, "reconfig"},
};

int sim_run_regressions(FILE *out, sim_stats *total, uint32_t *passed,
                        uint32_t *failed)
{
    uint32_t n = (uint32_t)(sizeof(sim_regressions) /
                            sizeof(sim_regressions[0]));
    uint32_t ok = 0;
    for (uint32_t i = 0; i < n; i++) {
        const sim_regression *r = &sim_regressions[i];
        const sim_profile *p = sim_profile_by_name(r->profile);
        if (!p) {
            fprintf(out, "sim: regression %s: unknown profile %s\n", r->name,
                    r->profile);
            return -1;
        }
        sim_config cfg;
        sim_default_config(&cfg, r->seed, r->nodes, p);
        sim_stats st = {0};
        int rc = sim_run(&cfg, &st, out);
        sim_add(total, &st);
        if (rc == 0) {
            (*passed)++;
            ok++;
        } else {
            (*failed)++;
            fprintf(out, "sim: regression %s (seed %" PRIu64 ", %u nodes, "
                    "%s) FAILED\n", r->name, r->seed, r->nodes, r->profile);
        }
    }
    fprintf(out, "sim: regressions %u/%u passed\n", ok, n);
    return 0;
}
