/*
 * sim.c - owns the simulator's command line, the fault profiles, the fault
 * schedule and the run loop of one seed.
 *
 * One run:
 *
 *   start --> fault phase --heal--> recovery --all ops done--> settle --> end
 *             (faults at            (no faults; must finish     (3 s: leader
 *              random gaps)          within liveness bound)      must be stable)
 *
 * Invariants:
 *   1. Everything a run does follows from its config and seed: one rng,
 *      events in (time, seq) order, no clock, no rand().
 *   2. Every fault is undone by the heal at fault_phase_ms: links restored,
 *      drops and duplicates off, crashed nodes restarted, paused nodes
 *      resumed.  After that only random delays remain.
 *   3. The run stops at the first violation; the first one is what is
 *      reported, with the trace rings and the replay command.
 *   4. Every run is bounded in virtual time (heal + liveness bound + settle)
 *      and in steps (SIM_MAX_STEPS), so a livelocked replica fails the
 *      seed instead of hanging the simulator.
 */
#include "sim.h"
#include "disk.h"

#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#define SIM_SETTLE_MS 3000
#define SIM_PROBE_MS 2000
#define SIM_MAX_STEPS 20000000ull
#define SIM_RUN_BOUND_FACTOR 10

enum { SIM_FAULT_TICK = 0, SIM_FAULT_HEAL = 1, SIM_PROBE_FIRST = 2,
       SIM_PROBE_LAST = 3 };

/* ------------------------------------------------------------- profiles */

static const sim_profile sim_profiles[] = {
    {.name = "calm", .delay_min_ms = 1, .delay_max_ms = 5, .fsync_max_ms = 2,
     .fault_gap_ms = 400, .fault_phase_ms = 2000},
    {.name = "lossy", .drop_ppm = 60000, .dup_ppm = 30000, .delay_min_ms = 1,
     .delay_max_ms = 40, .fsync_max_ms = 3, .short_write_ppm = 20000,
     .clock_steps = true, .fault_gap_ms = 400, .fault_phase_ms = 30000},
    {.name = "partition", .drop_ppm = 10000, .delay_min_ms = 1,
     .delay_max_ms = 10, .fsync_max_ms = 2, .partitions = true,
     .asym_partitions = true, .leader_isolation = true, .clock_steps = true,
     .fault_gap_ms = 500, .fault_phase_ms = 45000},
    {.name = "crash", .delay_min_ms = 1, .delay_max_ms = 10,
     .fsync_max_ms = 6, .crashes = true, .pauses = true, .chain_lag = true,
     .disk_fail_ppm = 300, .short_write_ppm = 5000, .flip_pct = 25,
     .fault_gap_ms = 450, .fault_phase_ms = 45000},
    {.name = "chaos", .drop_ppm = 30000, .dup_ppm = 20000, .delay_min_ms = 1,
     .delay_max_ms = 25, .fsync_max_ms = 5, .partitions = true,
     .asym_partitions = true, .crashes = true, .leader_isolation = true,
     .pauses = true, .chain_lag = true, .disk_fail_ppm = 200,
     .short_write_ppm = 5000, .flip_pct = 15, .clock_steps = true,
     .fault_gap_ms = 350, .fault_phase_ms = 60000},
    {.name = "slowdisk", .drop_ppm = 5000, .delay_min_ms = 1,
     .delay_max_ms = 4, .fsync_max_ms = 40, .crashes = true, .chain_lag = true,
     .leader_isolation = true, .disk_fail_ppm = 500, .short_write_ppm = 20000,
     .flip_pct = 20, .fault_gap_ms = 600, .fault_phase_ms = 45000},
    {.name = "amnesia", .drop_ppm = 5000, .delay_min_ms = 1,
     .delay_max_ms = 10, .fsync_max_ms = 6, .partitions = true,
     .crashes = true, .pauses = true, .chain_lag = true, .amnesia = true,
     .flip_pct = 10, .fault_gap_ms = 400, .fault_phase_ms = 45000},
    {.name = "sickdisk", .drop_ppm = 5000, .delay_min_ms = 1,
     .delay_max_ms = 10, .fsync_max_ms = 6, .crashes = true, .pauses = true,
     .chain_lag = true, .sick_disks = true, .fault_gap_ms = 400,
     .fault_phase_ms = 45000},
    {.name = "reconfig", .drop_ppm = 10000, .delay_min_ms = 1,
     .delay_max_ms = 10, .fsync_max_ms = 4, .partitions = true,
     .crashes = true, .pauses = true, .leader_isolation = true,
     .chain_lag = true, .reconfig = true, .fault_gap_ms = 300,
     .fault_phase_ms = 30000},
    {.name = "members", .drop_ppm = 10000, .dup_ppm = 10000,
     .delay_min_ms = 1, .delay_max_ms = 10, .fsync_max_ms = 3,
     .partitions = true, .asym_partitions = true, .crashes = true,
     .leader_isolation = true, .pauses = true, .chain_lag = true,
     .clock_steps = true, .membership = true, .fault_gap_ms = 300,
     .fault_phase_ms = 40000},
    {.name = "promotecut", .drop_ppm = 10000, .delay_min_ms = 1,
     .delay_max_ms = 10, .fsync_max_ms = 3, .partitions = true,
     .crashes = true, .leader_isolation = true, .pauses = true,
     .chain_lag = true, .membership = true, .promote_cut = true,
     .fault_gap_ms = 300, .fault_phase_ms = 40000},
    /* chaos with each node's monotonic clock at a rate of its own,
     * within 20% (the leases' bound is 2x) */
    {.name = "drift", .drop_ppm = 30000, .dup_ppm = 20000, .delay_min_ms = 1,
     .delay_max_ms = 25, .fsync_max_ms = 5, .partitions = true,
     .asym_partitions = true, .crashes = true, .leader_isolation = true,
     .pauses = true, .chain_lag = true, .short_write_ppm = 5000,
     .clock_steps = true, .clock_rate_ppm = 200000, .fault_gap_ms = 350,
     .fault_phase_ms = 60000},
    /* from here on: never drawn for a seed */
    {.name = "bench", .delay_min_ms = 1, .delay_max_ms = 1,
     .fault_gap_ms = 1000, .fault_phase_ms = 0},
    /* named regressions only: crashes, pauses and forged ballots */
    {.name = "forged", .delay_min_ms = 1, .delay_max_ms = 10,
     .fsync_max_ms = 4, .crashes = true, .pauses = true,
     .forged_ballots = true, .fault_gap_ms = 400, .fault_phase_ms = 20000},
};

static const char *const sim_fault_names[SIM_F_KINDS] = {
    [SIM_F_PARTITION] = "partition", [SIM_F_ONE_WAY] = "oneway",
    [SIM_F_ISOLATE] = "isolate", [SIM_F_CRASH] = "crash",
    [SIM_F_PAUSE] = "pause", [SIM_F_AMNESIA] = "amnesia",
    [SIM_F_FORGE] = "forge", [SIM_F_CLOCK] = "clock", [SIM_F_EIO] = "eio",
    [SIM_F_ENOSPC] = "enospc", [SIM_F_SHORT] = "short", [SIM_F_TORN] = "torn",
    [SIM_F_LOST] = "lost", [SIM_F_FLIP] = "flip", [SIM_F_SICK] = "sick",
    [SIM_F_RECONFIG] = "reconfig",
    [SIM_F_MEMBERS] = "members", [SIM_F_TRANSFER] = "transfer",
    [SIM_F_PROMOTE_CUT] = "promotecut",
};

const char *sim_fault_name(int kind)
{
    return kind >= 0 && kind < SIM_F_KINDS ? sim_fault_names[kind] : "?";
}

#define SIM_N_PROFILES (sizeof(sim_profiles) / sizeof(sim_profiles[0]))

uint32_t sim_profile_count(void)
{
    return (uint32_t)SIM_N_PROFILES - 2;   /* "bench", "forged" are not */
}

const sim_profile *sim_profile_at(uint32_t i)
{
    return &sim_profiles[i % SIM_N_PROFILES];
}

const sim_profile *sim_profile_by_name(const char *name)
{
    for (uint32_t i = 0; i < SIM_N_PROFILES; i++)
        if (strcmp(sim_profiles[i].name, name) == 0)
            return &sim_profiles[i];
    return NULL;
}

static uint64_t sim_mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

const sim_profile *sim_profile_for_seed(uint64_t seed)
{
    return &sim_profiles[sim_mix(seed) % sim_profile_count()];
}

static uint32_t sim_nodes_for_seed(uint64_t seed)
{
    static const uint32_t sizes[10] = {1, 3, 3, 3, 5, 5, 5, 7, 7, 3};
    return sizes[sim_mix(seed ^ 0x5eed) % 10];
}

void sim_default_config(sim_config *cfg, uint64_t seed, uint32_t nodes,
                        const sim_profile *p)
{
    memset(cfg, 0, sizeof(*cfg));
    uint64_t m = sim_mix(seed ^ 0xc11e);
    cfg->seed = seed;
    cfg->nodes = nodes ? nodes : sim_nodes_for_seed(seed);
    cfg->profile = p ? p : sim_profile_for_seed(seed);
    cfg->clients = 3 + (uint32_t)(m % 3);
    static const uint32_t retain[4] = {4, 16, 64, 0};
    static const uint32_t window_slots[4] = {1, 3, 8, 32};
    cfg->ops_per_client = 500;
    cfg->window = 1 + (uint32_t)((m >> 8) % 2);
    cfg->batch_max_requests = (m >> 16) % 3 == 0 ? 1 : 16;
    cfg->retain_slots = retain[(m >> 24) % 4];
    cfg->window_slots = window_slots[(m >> 32) % 4];
    cfg->liveness_bound_ms = 30000;
    /* the stores roll often: small logs and segments */
    static const uint64_t log_bytes[4] = {2048, 8192, 65536, 262144};
    static const uint64_t seg_bytes[4] = {4096, 32768, 262144, 0};
    static const uint32_t chain_ms[4] = {20, 60, 200, 500};
    cfg->acceptor_log_bytes = log_bytes[(m >> 40) % 4];
    cfg->segment_bytes = seg_bytes[(m >> 44) % 4];
    cfg->chain_sync_ms = cfg->profile->chain_lag ? chain_ms[(m >> 48) % 4]
                                                 : 20;
    cfg->sync_off_loop = (m >> 52) % 2;
}

/* ---------------------------------------------------------- fault plan */

static uint32_t sim_find_leader(sim_world *w)
{
    uint32_t best = 0;
    px_ballot best_b = {0, 0};
    for (uint32_t n = 1; n <= w->cfg.nodes; n++) {
        sim_host *h = &w->hosts[n];
        if (!h->alive)
            continue;
        px_status st;
        px_get_status(h->px, &st);
        if (st.role == PX_LEADER && px_ballot_cmp(st.ballot, best_b) > 0) {
            best = n;
            best_b = st.ballot;
        }
    }
    return best;
}

static void sim_cut_clear(sim_world *w)
{
    memset(w->cut, 0, sizeof(w->cut));
}

static void sim_links_heal_later(sim_world *w)
{
    w->partition_gen++;
    sim_schedule(w, w->now_ms + sim_rng_range(&w->rng, 200, 1500),
                 SIM_EV_HEAL_LINKS, 0, w->partition_gen, 0);
}

/* A membership change asked of the leader: mostly the next step of a
 * configuration (a node outside added as a learner, a learner promoted,
 * a member removed, the leader included, keeping two voters at least),
 * sometimes a leadership transfer.  Refusals (a change not committed
 * yet, a leader that has not committed in its ballot) are counted only
 * as asked. */
static void sim_change_members(sim_world *w)
{
    uint32_t leader = sim_find_leader(w);
    if (!leader)
        return;
    sim_host *h = &w->hosts[leader];
    px_status st;
    px_get_status(h->px, &st);
    px_members m = st.members;
    px_event ev = {.type = PX_EV_CHANGE_MEMBERS};
    uint32_t what = (uint32_t)sim_rng_below(&w->rng, 5);
    uint32_t outside[SIM_MAX_NODES], n_out = 0;
    for (uint32_t k = 1; k <= w->cfg.nodes; k++)
        if (!sim_is_member(&m, k, false))
            outside[n_out++] = k;
    if (what == 0) {
        ev.type = PX_EV_TRANSFER;
        ev.u.transfer_to = sim_rng_below(&w->rng, 2)
            ? 0 : m.voters[sim_rng_below(&w->rng, m.n_voters)];
        w->stats.by_kind[SIM_F_TRANSFER]++;
    } else if (what == 1 && n_out) {
        m.learners[m.n_learners++] = outside[sim_rng_below(&w->rng, n_out)];
    } else if (what == 2 && m.n_learners) {
        uint32_t i = (uint32_t)sim_rng_below(&w->rng, m.n_learners);
        uint32_t learner = m.learners[i];
        m.voters[m.n_voters++] = learner;
        m.learners[i] = m.learners[--m.n_learners];
        if (w->cfg.profile->promote_cut && learner != leader) {
            /* promoted while it hears nobody: the new configuration
             * commits without it, its quorums count it from then on */
            for (uint32_t b = 1; b <= w->cfg.nodes; b++)
                if (b != learner)
                    w->cut[learner][b] = w->cut[b][learner] = true;
            sim_trace_note(w, 0, SIM_TR_FAULT, "learner cut off, then "
                           "promoted: node", learner, learner);
            w->stats.by_kind[SIM_F_PROMOTE_CUT]++;
            sim_links_heal_later(w);
        }
    } else if (what == 3 && m.n_voters > 2) {
        uint32_t i = (uint32_t)sim_rng_below(&w->rng, m.n_voters);
        m.voters[i] = m.voters[--m.n_voters];
    } else if (what == 4 && m.n_learners) {
        uint32_t i = (uint32_t)sim_rng_below(&w->rng, m.n_learners);
        m.learners[i] = m.learners[--m.n_learners];
    } else if (n_out) {
        m.learners[m.n_learners++] = outside[sim_rng_below(&w->rng, n_out)];
    } else if (m.n_learners) {
        m.voters[m.n_voters++] = m.learners[--m.n_learners];
    } else {
        return;
    }
    if (ev.type == PX_EV_CHANGE_MEMBERS) {
        ev.u.change.members = m;
        w->stats.by_kind[SIM_F_MEMBERS]++;
    }
    int rc = sim_host_change(w, h, &ev);
    sim_trace_note(w, 0, SIM_TR_FAULT, ev.type == PX_EV_TRANSFER
                   ? "leadership transfer asked of node"
                   : "membership change asked of node", (uint32_t)-rc, leader);
}

static void sim_fault(sim_world *w)
{
    const sim_profile *p = w->cfg.profile;
    uint32_t n = w->cfg.nodes;
    enum { F_PART, F_ASYM, F_ISOLATE, F_CRASH, F_PAUSE, F_AMNESIA, F_FORGE,
           F_CLOCK, F_SICK, F_RECONFIG, F_MEMBERS, F_COUNT };
    /* a lost store is recovered from every other voter: one at a time,
     * and never in a cluster too small to have others to ask */
    bool recovering = sim_anyone_recovering(w);
    bool on[F_COUNT] = {p->partitions && n > 1, p->asym_partitions && n > 1,
                        p->leader_isolation && n > 1, p->crashes, p->pauses,
                        p->amnesia && n >= 3 && !recovering,
                        p->forged_ballots && n > 1, p->clock_steps,
                        p->sick_disks, p->reconfig && n >= 3 && n % 2,
                        p->membership && n >= 3};
    uint32_t choices[F_COUNT], k = 0;
    for (uint32_t i = 0; i < F_COUNT; i++)
        if (on[i])
            choices[k++] = i;
    if (k == 0)
        return;
    uint32_t f = choices[sim_rng_below(&w->rng, k)];
    uint32_t victim = 1 + (uint32_t)sim_rng_below(&w->rng, n);
    sim_host *h = &w->hosts[victim];
    w->stats.faults++;
    switch (f) {
    case F_PART: {
        bool side[SIM_MAX_NODES + 1] = {false};
        uint32_t in_a = 0;
        while (in_a == 0 || in_a == n) {
            in_a = 0;
            for (uint32_t i = 1; i <= n; i++)
                in_a += (side[i] = sim_rng_below(&w->rng, 2));
        }
        sim_cut_clear(w);
        for (uint32_t a = 1; a <= n; a++)
            for (uint32_t b = 1; b <= n; b++)
                w->cut[a][b] = side[a] != side[b];
        sim_trace_note(w, 0, SIM_TR_FAULT, "partition (symmetric)", in_a, 0);
        w->stats.by_kind[SIM_F_PARTITION]++;
        sim_links_heal_later(w);
        break;
    }
    case F_ASYM: {
        uint32_t to = 1 + (uint32_t)sim_rng_below(&w->rng, n);
        if (to == victim)
            to = to % n + 1;
        w->cut[victim][to] = true;
        if (sim_rng_below(&w->rng, 2))   /* sometimes cut all its sends */
            for (uint32_t b = 1; b <= n; b++)
                w->cut[victim][b] = true;
        sim_trace_note(w, 0, SIM_TR_FAULT, "one-way cut from node", to,
                       victim);
        w->stats.by_kind[SIM_F_ONE_WAY]++;
        sim_links_heal_later(w);
        break;
    }
    case F_ISOLATE: {
        uint32_t leader = sim_find_leader(w);
        if (!leader)
            leader = victim;
        sim_cut_clear(w);
        for (uint32_t b = 1; b <= n; b++)
            w->cut[leader][b] = w->cut[b][leader] = true;
        sim_trace_note(w, 0, SIM_TR_FAULT, "leader isolated", leader, leader);
        w->stats.by_kind[SIM_F_ISOLATE]++;
        sim_links_heal_later(w);
        break;
    }
    case F_CRASH:
        if (!h->alive)
            break;
        sim_host_crash(w, h);
        sim_trace_note(w, 0, SIM_TR_FAULT, "crash node", victim, victim);
        w->stats.by_kind[SIM_F_CRASH]++;
        sim_schedule(w, w->now_ms + sim_rng_range(&w->rng, 30, 1500),
                     SIM_EV_RESTART, victim, h->epoch, 0);
        break;
    case F_AMNESIA: {
        if (!h->alive)
            break;
        bool rollback = sim_rng_below(&w->rng, 2);
        sim_host_lose_state(w, h, rollback);
        sim_trace_note(w, 0, SIM_TR_FAULT, rollback ? "roll back node"
                       : "node loses its acceptor store", victim, victim);
        w->stats.by_kind[SIM_F_AMNESIA]++;
        sim_schedule(w, w->now_ms + sim_rng_range(&w->rng, 30, 1500),
                     SIM_EV_RESTART, victim, h->epoch, 0);
        break;
    }
    case F_FORGE: {
        /* in the name of `victim`, to every other node: a ballot with the
         * largest round the replica once accepted (2^62 - 1), which used
         * to leave the cluster without a usable next round */
        static const uint8_t types[] = { PX_MSG_HEARTBEAT, PX_MSG_PREPARE,
                                         PX_MSG_ACCEPT, PX_MSG_REJECT,
                                         PX_MSG_COMMIT };
        uint8_t type = types[sim_rng_below(&w->rng, sizeof types)];
        px_ballot top = {(UINT64_C(1) << 62) - 1, victim};
        for (uint32_t to = 1; to <= n; to++) {
            if (to == victim)
                continue;
            px_msg m = {.type = type, .from = victim, .to = to};
            if (type == PX_MSG_REJECT) {
                m.ballot = (px_ballot){1, to};
                m.aux_ballot = top;
            } else {
                m.ballot = top;
            }
            sim_net_send(w, &m);
        }
        sim_trace_note(w, 0, SIM_TR_FAULT, "forged ballot from node", type,
                       victim);
        w->stats.by_kind[SIM_F_FORGE]++;
        break;
    }
    case F_CLOCK:
        sim_host_clock_step(w, h);
        w->stats.by_kind[SIM_F_CLOCK]++;
        break;
    case F_SICK: {
        /* mostly the leader's disk: the case that must fail over */
        uint32_t leader = sim_find_leader(w);
        if (leader && sim_rng_below(&w->rng, 2))
            h = &w->hosts[victim = leader];
        if (!h->alive || h->paused || h->sick)
            break;
        sim_host_disk_fail(w, h);
        sim_trace_note(w, 0, SIM_TR_FAULT, "disk of node fails", victim,
                       victim);
        w->stats.by_kind[SIM_F_SICK]++;
        sim_schedule(w, w->now_ms + sim_rng_range(&w->rng, 100, 2000),
                     SIM_EV_DISK_OK, victim, h->sick_gen, 0);
        break;
    }
    case F_RECONFIG: {
        /* one voter at a time, at most one learner: a voter (the leader
         * itself a third of the time) becomes a learner, or the learner
         * a voter again; refused changes (busy, no leader yet) count
         * nothing */
        uint32_t leader = sim_find_leader(w);
        if (!leader)
            break;
        sim_host *lh = &w->hosts[leader];
        px_status st;
        px_get_status(lh->px, &st);
        px_members m = st.members;
        uint32_t who;
        if (m.n_learners == 0) {
            who = sim_rng_below(&w->rng, 3) == 0 ? leader : victim;
            uint32_t kept = 0;
            for (uint32_t i = 0; i < m.n_voters; i++)
                if (m.voters[i] != who)
                    m.voters[kept++] = m.voters[i];
            if (kept == m.n_voters || kept == 0)
                break;
            m.n_voters = kept;
            m.learners[m.n_learners++] = who;
        } else {
            who = m.learners[0];
            m.n_learners = 0;
            m.voters[m.n_voters++] = who;
        }
        int rc = sim_host_change_members(w, lh, &m);
        sim_trace_note(w, 0, SIM_TR_FAULT, rc == 0 ? "reconfig: node to "
                       "learner(0)/voter(1)" : "reconfig refused for node",
                       rc == 0 ? (uint64_t)(m.n_learners == 0) : (uint64_t)-rc,
                       who);
        if (rc == 0)
            w->stats.by_kind[SIM_F_RECONFIG]++;
        break;
    }
    case F_MEMBERS:
        sim_change_members(w);
        break;
    case F_PAUSE:
        if (!h->alive || h->paused)
            break;
        h->paused = true;
        h->pause_gen++;
        sim_trace_note(w, victim, SIM_TR_FAULT, "pause", 0, 0);
        sim_trace_note(w, 0, SIM_TR_FAULT, "pause node", victim, victim);
        w->stats.by_kind[SIM_F_PAUSE]++;
        sim_schedule(w, w->now_ms + sim_rng_range(&w->rng, 300, 2500),
                     SIM_EV_RESUME, victim, h->pause_gen, 0);
        break;
    }
}

static void sim_resume(sim_world *w, sim_host *h)
{
    if (!h->paused)
        return;
    h->paused = false;
    sim_trace_note(w, h->id, SIM_TR_FAULT, "resume", h->n_deferred, 0);
    for (uint32_t i = 0; i < h->n_deferred; i++) {
        sim_event ev = h->deferred[i];
        ev.at_ms = w->now_ms;
        if (sim_queue_push(&w->q, &ev) < 0) {
            free(ev.msg);
            sim_violation(w, "event queue push failed on resume");
        }
    }
    h->n_deferred = 0;
}

static void sim_heal(sim_world *w)
{
    sim_trace_note(w, 0, SIM_TR_FAULT, "heal all", 0, 0);
    w->faults_on = false;
    w->healed = true;
    w->heal_ms = w->now_ms;
    w->partition_gen++;
    sim_cut_clear(w);
    fdisk_faults off = {0};
    for (uint32_t n = 1; n <= w->cfg.nodes; n++) {
        fdisk_set_faults(n, &off);
        sim_host_disk_ok(w, &w->hosts[n]);   /* sick disks work again */
    }
    for (uint32_t n = 1; n <= w->cfg.nodes; n++) {
        sim_host *h = &w->hosts[n];
        if (!h->alive)
            sim_host_start(w, h);
        else
            sim_resume(w, h);
        if (h->alive && h->suspended)
            sim_host_try_reopen(w, h);
    }
}

static int sim_defer(sim_world *w, sim_host *h, const sim_event *ev)
{
    if (h->n_deferred == h->cap_deferred) {
        uint32_t cap = h->cap_deferred ? h->cap_deferred * 2 : 64;
        sim_event *v = realloc(h->deferred, cap * sizeof(*v));
        if (!v) {
            sim_violation(w, "out of memory deferring an event");
            return -ENOMEM;
        }
        h->deferred = v;
        h->cap_deferred = cap;
    }
    h->deferred[h->n_deferred++] = *ev;
    return 0;
}

/* Each node's replica as the run ends (a liveness failure). */
void sim_print_nodes(sim_world *w)
{
    if (!w->out)
        return;
    for (uint32_t n = 1; n <= w->cfg.nodes; n++) {
        const sim_host *h = &w->hosts[n];
        if (!h->alive || !h->px) {
            fprintf(w->out, "node %u: down\n", n);
            continue;
        }
        px_status st;
        px_get_status(h->px, &st);
        fprintf(w->out, "node %u: role %u leader %u ballot (%llu,%u) commit "
                "%llu applied %llu voters", n, st.role, st.leader_id,
                (unsigned long long)st.ballot.round, st.ballot.node_id,
                (unsigned long long)st.commit_index,
                (unsigned long long)st.applied_index);
        for (uint32_t i = 0; i < st.members.n_voters; i++)
            fprintf(w->out, " %u", st.members.voters[i]);
        fprintf(w->out, " learners");
        for (uint32_t i = 0; i < st.members.n_learners; i++)
            fprintf(w->out, " %u", st.members.learners[i]);
        fprintf(w->out, " config_slot %llu transfer_to %u recovering %d\n",
                (unsigned long long)st.config_slot, st.transfer_to,
                st.recovering);
    }
}

/* --------------------------------------------------------- leader probe */

typedef struct sim_probe {
    uint32_t leader;
    uint64_t changes;
} sim_probe;

static bool sim_probe_take(sim_world *w, sim_probe *p)
{
    memset(p, 0, sizeof(*p));
    const px_members *now = sim_members_now(w);
    for (uint32_t n = 1; n <= w->cfg.nodes; n++) {
        if (!sim_is_member(now, n, false))
            continue;   /* removed, or never added: follows nobody */
        px_status st;
        px_stats stats;
        px_get_status(w->hosts[n].px, &st);
        px_get_stats(w->hosts[n].px, &stats);
        p->changes += stats.leader_changes;
        if (st.leader_id == 0 || (p->leader && st.leader_id != p->leader)) {
            sim_violation(w, "LEADER: node %u sees leader %u, others %u", n,
                          st.leader_id, p->leader);
            sim_print_nodes(w);
            return false;
        }
        p->leader = st.leader_id;
    }
    px_status st;
    if (p->leader < 1 || p->leader > w->cfg.nodes ||
        !sim_is_member(now, p->leader, true)) {
        sim_violation(w, "LEADER: leader id %u is not a member", p->leader);
        return false;
    }
    px_get_status(w->hosts[p->leader].px, &st);
    if (st.role != PX_LEADER) {
        sim_violation(w, "LEADER: node %u is named leader but has role %u",
                      p->leader, st.role);
        return false;
    }
    return true;
}

/* ------------------------------------------------------------- the run */

int sim_world_init(sim_world *w, const sim_config *cfg, FILE *out)
{
    memset(w, 0, sizeof(*w));
    w->cfg = *cfg;
    w->out = out;
    sim_rng_seed(&w->rng, cfg->seed);
    if (cfg->nodes < 1 || cfg->nodes > SIM_MAX_NODES ||
        cfg->clients > SIM_MAX_CLIENTS || cfg->window < 1 ||
        cfg->window > SIM_MAX_WINDOW)
        return -EINVAL;
    if (!cfg->bench) {
        w->trace = calloc(1, sizeof(*w->trace));
        if (!w->trace)
            return -ENOMEM;
    }
    /* with membership changes, the last two of 5 or 7 nodes start
     * outside the configuration, to be added */
    uint32_t voters = cfg->nodes;
    if (cfg->profile->membership && cfg->nodes >= 5)
        voters = cfg->nodes - 2;
    for (uint32_t n = 1; n <= voters; n++)
        w->members.voters[w->members.n_voters++] = n;
    for (uint32_t n = 1; n <= cfg->nodes; n++) {
        int rc = sim_host_init(w, &w->hosts[n], n);
        if (rc < 0)
            return rc;
    }
    /* small acceptor logs from their creation on (the host sets the
     * bound on each store too) */
    acceptor_set_default_log_bytes(cfg->acceptor_log_bytes);
    return fdisk_init(cfg->nodes, cfg->seed, sim_host_synced, w);
}

void sim_world_free(sim_world *w)
{
    for (uint32_t n = 1; n <= w->cfg.nodes; n++)
        sim_host_free(&w->hosts[n]);
    fdisk_free();
    acceptor_set_default_log_bytes(0);
    sim_clients_free(w);
    sim_queue_free(&w->q);
    sim_check_free(&w->check);
    for (uint32_t i = 0; i < w->n_captured; i++)
        free(w->captured[i]);
    free(w->captured);
    w->captured = NULL;
    w->n_captured = w->cap_captured = 0;
    free(w->trace);
    w->trace = NULL;
}

static void sim_dispatch(sim_world *w, sim_event *ev, sim_probe *probe)
{
    sim_host *h = ev->node <= w->cfg.nodes ? &w->hosts[ev->node] : NULL;
    switch (ev->kind) {
    case SIM_EV_DELIVER:
    case SIM_EV_TIMER:
    case SIM_EV_FSYNC:
    case SIM_EV_BG:
    case SIM_EV_REOPEN:
        if (!h || ev->node == 0)
            break;
        if (h->paused && h->alive) {
            if (sim_defer(w, h, ev) == 0)
                ev->msg = NULL;          /* now owned by the deferral */
            break;
        }
        sim_host_event(w, h, ev);
        break;
    case SIM_EV_CLIENT:
        sim_client_event(w, ev);
        break;
    case SIM_EV_RESTART:
        /* b: a restart after a storage failure, also once healed */
        if (h && !h->alive && h->epoch == ev->a && (!w->healed || ev->b))
            sim_host_start(w, h);
        break;
    case SIM_EV_RESUME:
        if (h && h->pause_gen == ev->a)
            sim_resume(w, h);
        break;
    case SIM_EV_DISK_OK:
        if (h && h->sick && h->sick_gen == ev->a)
            sim_host_disk_ok(w, h);
        break;
    case SIM_EV_HEAL_LINKS:
        if (ev->a == w->partition_gen) {
            sim_cut_clear(w);
            sim_trace_note(w, 0, SIM_TR_FAULT, "links healed", 0, 0);
        }
        break;
    case SIM_EV_FAULT:
        if (ev->a == SIM_FAULT_HEAL) {
            sim_heal(w);
        } else if (ev->a == SIM_FAULT_TICK) {
            if (w->healed)
                break;
            sim_fault(w);
            uint32_t gap = w->cfg.profile->fault_gap_ms;
            sim_schedule(w, w->now_ms + sim_rng_range(&w->rng, gap / 2,
                                                      gap * 3 / 2),
                         SIM_EV_FAULT, 0, SIM_FAULT_TICK, 0);
        } else if (ev->a == SIM_PROBE_FIRST) {
            sim_probe_take(w, probe);
        } else if (ev->a == SIM_PROBE_LAST) {
            sim_probe last;
            if (sim_probe_take(w, &last) &&
                (last.leader != probe->leader ||
                 last.changes != probe->changes))
                sim_violation(w, "LEADER: not stable after healing: leader "
                              "%u -> %u, leader changes %llu -> %llu",
                              probe->leader, last.leader,
                              (unsigned long long)probe->changes,
                              (unsigned long long)last.changes);
        }
        break;
    default:
        sim_violation(w, "unknown event kind %u", ev->kind);
        break;
    }
    free(ev->msg);
    ev->msg = NULL;
}

int sim_run(const sim_config *cfg, sim_stats *stats, FILE *out)
{
    static sim_world world;                /* large: keep off the stack */
    sim_world *w = &world;
    int rc = sim_world_init(w, cfg, out);
    if (rc < 0) {
        sim_world_free(w);
        return rc;
    }
    for (uint32_t n = 1; n <= cfg->nodes; n++)
        sim_host_start(w, &w->hosts[n]);
    sim_clients_init(w);
    const sim_profile *p = cfg->profile;
    if (p->fault_phase_ms) {
        w->faults_on = true;
        fdisk_faults f = { .on = true, .fail_ppm = p->disk_fail_ppm,
                           .short_ppm = p->short_write_ppm };
        for (uint32_t n = 1; n <= cfg->nodes; n++)
            fdisk_set_faults(n, &f);
        sim_schedule(w, p->fault_gap_ms, SIM_EV_FAULT, 0, SIM_FAULT_TICK, 0);
        sim_schedule(w, p->fault_phase_ms, SIM_EV_FAULT, 0, SIM_FAULT_HEAL, 0);
    } else {
        w->healed = true;
    }

    sim_probe probe = {0};
    uint64_t done_ms = 0, end_ms = UINT64_MAX;
    sim_event ev;
    while (w->stats.violations == 0 && sim_queue_pop(&w->q, &ev)) {
        if (ev.at_ms > end_ms) {
            free(ev.msg);
            break;
        }
        w->now_ms = ev.at_ms;
        sim_dispatch(w, &ev, &probe);
        if (w->stats.steps > SIM_MAX_STEPS) {
            sim_violation(w, "step budget exhausted (livelock?)");
            break;
        }
        if (!w->healed)
            continue;
        if (!done_ms && sim_clients_done(w)) {
            done_ms = w->now_ms;
            end_ms = done_ms + (cfg->bench ? 500 : SIM_SETTLE_MS);
            if (!cfg->bench) {
                sim_schedule(w, done_ms + SIM_PROBE_MS, SIM_EV_FAULT, 0,
                             SIM_PROBE_FIRST, 0);
                sim_schedule(w, end_ms, SIM_EV_FAULT, 0, SIM_PROBE_LAST, 0);
            }
        }
        /* each op is held to the bound by its client (client.c); this
         * catches a run whose clients stopped being driven at all */
        if (!done_ms &&
            w->now_ms > w->heal_ms + SIM_RUN_BOUND_FACTOR *
                                     cfg->liveness_bound_ms) {
            sim_violation(w, "LIVENESS: clients not done %llu ms after "
                          "healing", (unsigned long long)(w->now_ms -
                                                          w->heal_ms));
            sim_clients_print_pending(w);
            sim_print_nodes(w);
        }
    }
    if (w->stats.violations == 0)
        sim_check_final(w);
    if (w->stats.violations && out) {
        fprintf(out, "FAIL seed=%" PRIu64 " nodes=%u profile=%s: %s\n",
                cfg->seed, cfg->nodes, p->name, w->violation);
        sim_trace_dump(w, out);
        fprintf(out, "replay: build/sim --seed %" PRIu64 " --nodes %u "
                "--profile %s --trace\n", cfg->seed, cfg->nodes, p->name);
    }
    fdisk_counts dc;
    fdisk_counts_get(&dc);
    w->stats.by_kind[SIM_F_EIO] += dc.eio;
    w->stats.by_kind[SIM_F_ENOSPC] += dc.enospc;
    w->stats.by_kind[SIM_F_SHORT] += dc.short_writes;
    w->stats.by_kind[SIM_F_TORN] += dc.torn;
    w->stats.by_kind[SIM_F_LOST] += dc.lost_ops;
    for (uint32_t n = 1; n <= cfg->nodes; n++) {
        if (!w->hosts[n].px)
            continue;
        px_stats ps;
        px_get_stats(w->hosts[n].px, &ps);
        w->stats.lease_grants += ps.lease_grants;
        w->stats.lease_reads += ps.lease_reads;
        w->stats.votes_sent += ps.votes_sent;
        w->stats.vote_commits += ps.vote_commits;
    }
    *stats = w->stats;
    sim_world_free(w);
    return stats->violations ? 1 : 0;
}

/* ----------------------------------------------------------------- CLI */

static void sim_usage(void)
{
    fprintf(stderr,
            "usage: sim [--seeds N [--from S]] [--seed S] [--nodes N] [--profile NAME]\n"
            "           [--clients N] [--window N] [--batch N] [--ops N]\n"
            "           [--trace] [--bench] [--no-regressions] [--jobs N]\n"
            "           [--scenarios]\n"
            "profiles: calm lossy partition crash chaos slowdisk amnesia sickdisk "
            "reconfig members promotecut forged\n");
}

void sim_fault_summary(const sim_stats *st, char *out, size_t len)
{
    size_t off = 0;
    out[0] = '\0';
    for (int k = 0; k < SIM_F_KINDS; k++) {
        if (!st->by_kind[k])
            continue;
        int n = snprintf(out + off, len - off, "%s%s=%llu", off ? " " : "",
                         sim_fault_name(k),
                         (unsigned long long)st->by_kind[k]);
        if (n < 0 || (size_t)n >= len - off)
            break;
        off += (size_t)n;
    }
}

void sim_add(sim_stats *total, const sim_stats *s)
{
    total->steps += s->steps;
    total->faults += s->faults;
    total->requests += s->requests;
    total->msgs += s->msgs;
    total->violations += s->violations;
    total->ops_done += s->ops_done;
    total->lease_grants += s->lease_grants;
    total->lease_reads += s->lease_reads;
    total->votes_sent += s->votes_sent;
    total->vote_commits += s->vote_commits;
    for (int k = 0; k < SIM_F_KINDS; k++)
        total->by_kind[k] += s->by_kind[k];
}

/* What a batch of seeds adds up to. */
typedef struct sim_tally {
    sim_stats st;
    uint32_t passed, failed, ran;
} sim_tally;

typedef struct sim_batch {
    uint64_t from, count;
    uint32_t nodes;
    const sim_profile *profile;
    sim_config over;             /* non-zero fields override */
    bool trace;
} sim_batch;

/* Seeds from + i for i = first, first + step, ... < count. */
static void sim_run_batch(const sim_batch *b, uint64_t first, uint64_t step,
                          FILE *out, sim_tally *t)
{
    for (uint64_t i = first; i < b->count; i += step) {
        sim_config cfg;
        uint64_t s = b->from + i;
        sim_default_config(&cfg, s, b->nodes, b->profile);
        cfg.trace_live = b->trace;
        if (b->over.clients)
            cfg.clients = b->over.clients;
        if (b->over.window)
            cfg.window = b->over.window;
        if (b->over.batch_max_requests)
            cfg.batch_max_requests = b->over.batch_max_requests;
        if (b->over.ops_per_client)
            cfg.ops_per_client = b->over.ops_per_client;
        sim_stats st = {0};
        int rc = sim_run(&cfg, &st, out);
        if (rc < 0) {
            fprintf(out, "sim: seed %" PRIu64 ": setup failed: %s\n", s,
                    strerror(-rc));
            t->failed++;
            st.violations++;
        } else if (rc > 0) {
            t->failed++;
        } else {
            t->passed++;
        }
        t->ran++;
        sim_add(&t->st, &st);
        fflush(out);
    }
}

/* The batch on `jobs` processes (seeds interleaved among them); their
 * reports are printed job by job once all are done, their tallies added
 * to *t.  0, or -1 when a job could not run. */
static int sim_run_jobs(const sim_batch *b, uint32_t jobs, sim_tally *t)
{
    sim_tally *shared = mmap(NULL, jobs * sizeof *shared,
                             PROT_READ | PROT_WRITE,
                             MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED)
        return -1;
    memset(shared, 0, jobs * sizeof *shared);
    FILE *outs[64] = {0};
    pid_t pids[64] = {0};
    int rc = 0;
    for (uint32_t k = 0; k < jobs; k++) {
        outs[k] = tmpfile();
        if (!outs[k]) {
            rc = -1;
            break;
        }
        fflush(stdout);
        pids[k] = fork();
        if (pids[k] == 0) {
            sim_run_batch(b, k, jobs, outs[k], &shared[k]);
            fflush(outs[k]);
            exit(0);   /* not _exit: the leak checker runs at exit */
        }
        if (pids[k] < 0) {
            rc = -1;
            break;
        }
    }
    for (uint32_t k = 0; k < jobs; k++) {
        int status = 0;
        if (pids[k] > 0 && (waitpid(pids[k], &status, 0) != pids[k] ||
                            !WIFEXITED(status) || WEXITSTATUS(status) != 0)) {
            fprintf(stdout, "sim: job %u did not finish (status %d)\n", k,
                    status);
            rc = -1;
        }
        if (outs[k]) {
            char buf[65536];
            size_t n;
            rewind(outs[k]);
            while ((n = fread(buf, 1, sizeof buf, outs[k])) > 0)
                fwrite(buf, 1, n, stdout);
            fclose(outs[k]);
        }
        t->passed += shared[k].passed;
        t->failed += shared[k].failed;
        t->ran += shared[k].ran;
        sim_add(&t->st, &shared[k].st);
    }
    munmap(shared, jobs * sizeof *shared);
    return rc;
}

int main(int argc, char **argv)
{
    /* the fake disk grows and frees megabyte images all the time: keep
     * them in the heap instead of fresh mappings (page faults were a
     * sixth of the run time) */
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
    uint64_t seeds = 0, seed = 0, from = 1;   /* --seeds runs from .. from+seeds-1 */
    bool one_seed = false, trace = false, bench = false, regressions = true;
    bool scenarios_only = false;
    uint32_t nodes = 0, jobs = 1;
    const sim_profile *profile = NULL;
    sim_config over = {0};           /* non-zero fields override */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--seeds") == 0 && v) {
            seeds = strtoull(v, NULL, 10);
            i++;
        } else if (strcmp(a, "--from") == 0 && v) {
            from = strtoull(v, NULL, 10);
            i++;
        } else if (strcmp(a, "--seed") == 0 && v) {
            seed = strtoull(v, NULL, 10);
            one_seed = true;
            i++;
        } else if (strcmp(a, "--nodes") == 0 && v) {
            nodes = (uint32_t)strtoul(v, NULL, 10);
            i++;
            if (nodes < 1 || nodes > SIM_MAX_NODES) {
                fprintf(stderr, "sim: --nodes must be 1..%d\n", SIM_MAX_NODES);
                return 2;
            }
        } else if (strcmp(a, "--profile") == 0 && v) {
            profile = sim_profile_by_name(v);
            i++;
            if (!profile) {
                sim_usage();
                return 2;
            }
        } else if (strcmp(a, "--clients") == 0 && v) {
            over.clients = (uint32_t)strtoul(v, NULL, 10);
            i++;
        } else if (strcmp(a, "--window") == 0 && v) {
            over.window = (uint32_t)strtoul(v, NULL, 10);
            i++;
        } else if (strcmp(a, "--batch") == 0 && v) {
            over.batch_max_requests = (uint32_t)strtoul(v, NULL, 10);
            i++;
        } else if (strcmp(a, "--ops") == 0 && v) {
            over.ops_per_client = (uint32_t)strtoul(v, NULL, 10);
            i++;
        } else if (strcmp(a, "--trace") == 0) {
            trace = true;
        } else if (strcmp(a, "--bench") == 0) {
            bench = true;
        } else if (strcmp(a, "--no-regressions") == 0) {
            regressions = false;
        } else if (strcmp(a, "--scenarios") == 0) {
            scenarios_only = true;
        } else if (strcmp(a, "--jobs") == 0 && v) {
            jobs = (uint32_t)strtoul(v, NULL, 10);
            i++;
            if (jobs < 1 || jobs > 64) {
                fprintf(stderr, "sim: --jobs must be 1..64\n");
                return 2;
            }
        } else {
            sim_usage();
            return 2;
        }
    }
    if (bench)
        return sim_bench(stdout) == 0 ? 0 : 1;
    if (!one_seed && seeds == 0)
        seeds = 100;

    sim_tally all = {0};
    if ((regressions || scenarios_only) && !one_seed)
        sim_run_scenarios(stdout, &all.passed, &all.failed);
    if (scenarios_only) {
        printf("%u passed, %u failed\n", all.passed, all.failed);
        return all.failed ? 1 : 0;
    }
    if (regressions && !one_seed &&
        sim_run_regressions(stdout, &all.st, &all.passed, &all.failed) < 0)
        return 2;
    fflush(stdout);
    sim_batch b = { .from = one_seed ? seed : from,
                    .count = one_seed ? 1 : seeds, .nodes = nodes,
                    .profile = profile, .over = over, .trace = trace };
    if (jobs <= 1 || one_seed) {
        sim_run_batch(&b, 0, 1, stdout, &all);
    } else if (sim_run_jobs(&b, jobs, &all) < 0) {
        return 2;
    }
    sim_stats total = all.st;
    uint32_t passed = all.passed, failed = all.failed, ran = all.ran;
    char kinds[512];
    sim_fault_summary(&total, kinds, sizeof kinds);
    printf("sim: seeds=%u steps=%llu msgs=%llu faults=%llu (%s) requests=%llu "
           "follower-lease grants=%llu reads=%llu leader votes=%llu "
           "vote commits=%llu violations=%llu\n", ran,
           (unsigned long long)total.steps,
           (unsigned long long)total.msgs, (unsigned long long)total.faults,
           kinds, (unsigned long long)total.requests,
           (unsigned long long)total.lease_grants,
           (unsigned long long)total.lease_reads,
           (unsigned long long)total.votes_sent,
           (unsigned long long)total.vote_commits,
           (unsigned long long)total.violations);
    printf("%u passed, %u failed\n", passed, failed);
    return failed ? 1 : 0;
}
