/*
 * scenario.c - owns the exact-trace scenarios: narrow protocol paths of
 * the production host (node/host.h) driven by a script, with the
 * messages each step must produce written out in full, so a regression
 * there fails the same way whatever the random seeds draw.
 *
 * A scripted world (sim_world.scripted) keeps every message a node sends
 * and every fdatasync it starts; the script delivers messages, completes
 * or fails fdatasyncs, crashes nodes and advances time, and after each
 * step compares what was sent with the expected lines:
 *
 *     TYPE from>to b=round.node slot=S commit=C aux=A [entries=F..L]
 *
 * (the slots of the entries carried, if any).  Nodes never time out unless a script says so:
 * node 1's election timeout is 100 ms, everybody else's far away, and
 * heartbeats are 10 s apart.
 *
 * Invariants:
 *   1. A scenario's outcome follows from its script alone: no random
 *      delay, drop or fault is drawn (the fake disk's crash mode is set
 *      explicitly where a crash happens).
 *   2. Every message sent is checked: a step that sends one more, one
 *      fewer or another message than expected fails the scenario.
 */
#include "sim.h"
#include "disk.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

typedef struct scn {
    sim_world *w;
    FILE *out;
    const char *name;
    uint32_t checked;            /* captured messages compared so far */
    bool failed;
    bool print;                  /* SIM_SCENARIO_PRINT: show every line */
} scn;

static const char *scn_type(uint8_t t)
{
    static const char *const n[PX_MSG_TYPE_COUNT] = {
        [PX_MSG_PREPARE] = "PREPARE", [PX_MSG_PROMISE] = "PROMISE",
        [PX_MSG_ACCEPT] = "ACCEPT", [PX_MSG_ACCEPTED] = "ACCEPTED",
        [PX_MSG_REJECT] = "REJECT", [PX_MSG_HEARTBEAT] = "HEARTBEAT",
        [PX_MSG_HEARTBEAT_ACK] = "HB_ACK", [PX_MSG_FORWARD] = "FORWARD",
        [PX_MSG_CATCHUP_REQ] = "CATCHUP_REQ", [PX_MSG_CATCHUP] = "CATCHUP",
        [PX_MSG_SNAPSHOT_NEEDED] = "SNAP_NEEDED", [PX_MSG_COMMIT] = "COMMIT",
    };
    return t < PX_MSG_TYPE_COUNT && n[t] ? n[t] : "?";
}

static void scn_line(const px_msg *m, char *buf, size_t len)
{
    int n = snprintf(buf, len, "%s %u>%u b=%" PRIu64 ".%u slot=%" PRIu64
                     " commit=%" PRIu64 " aux=%" PRIu64, scn_type(m->type),
                     m->from, m->to, m->ballot.round, m->ballot.node_id,
                     m->slot, m->commit,
                     m->aux == UINT64_MAX ? 0 : m->aux);
    if (m->n_entries && n > 0 && (size_t)n < len)
        snprintf(buf + n, len - (size_t)n, " entries=%" PRIu64 "..%" PRIu64,
                 m->entries[0].slot, m->entries[m->n_entries - 1].slot);
}

static void scn_fail(scn *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void scn_fail(scn *s, const char *fmt, ...)
{
    if (s->failed)
        return;
    s->failed = true;
    va_list ap;
    va_start(ap, fmt);
    fprintf(s->out, "sim: scenario %s FAILED: ", s->name);
    vfprintf(s->out, fmt, ap);
    fprintf(s->out, "\n");
    va_end(ap);
}

/* Exactly these messages (NULL-terminated) were sent since the last
 * check, in this order. */
static void scn_sent(scn *s, const char *const *want)
{
    sim_world *w = s->w;
    char got[160];
    uint32_t i = s->checked, k = 0;
    for (; i < w->n_captured; i++, k++) {
        scn_line(w->captured[i], got, sizeof got);
        if (s->print)
            fprintf(s->out, "  %s: sent %s\n", s->name, got);
        if (!want[k]) {
            scn_fail(s, "unexpected message: %s", got);
            break;
        }
        if (strcmp(got, want[k]) != 0) {
            scn_fail(s, "message %u: expected \"%s\", sent \"%s\"", k,
                     want[k], got);
            break;
        }
    }
    if (!s->failed && want[k])
        scn_fail(s, "expected \"%s\", nothing more was sent", want[k]);
    s->checked = w->n_captured;
    if (w->stats.violations)
        scn_fail(s, "checker: %s", w->violation);
}

#define SENT(s, ...) scn_sent((s), (const char *const[]){ __VA_ARGS__, NULL })
#define NOTHING(s) scn_sent((s), (const char *const[]){ NULL })

/* Deliver the first captured message whose line starts with `prefix`. */
static void scn_deliver(scn *s, const char *prefix)
{
    sim_world *w = s->w;
    char line[160];
    for (uint32_t i = 0; i < w->n_captured; i++) {
        scn_line(w->captured[i], line, sizeof line);
        if (strncmp(line, prefix, strlen(prefix)) != 0)
            continue;
        px_msg *m = w->captured[i];
        memmove(&w->captured[i], &w->captured[i + 1],
                (w->n_captured - i - 1) * sizeof *w->captured);
        w->n_captured--;
        if (i < s->checked)
            s->checked--;
        sim_event ev = { .at_ms = w->now_ms, .kind = SIM_EV_DELIVER,
                         .node = m->to, .msg = m };
        if (m->to >= 1 && m->to <= w->cfg.nodes)
            sim_host_event(w, &w->hosts[m->to], &ev);
        free(m);
        return;
    }
    scn_fail(s, "no message \"%s...\" to deliver", prefix);
}

/* Drop every captured message (lost on the way). */
static void scn_drop_all(scn *s)
{
    sim_world *w = s->w;
    for (uint32_t i = 0; i < w->n_captured; i++)
        free(w->captured[i]);
    w->n_captured = 0;
    s->checked = 0;
}

/* The fdatasync `kind` node started returns (0), or fails (-errno:
 * the fake disk fails the call it makes at completion time). */
static void scn_sync(scn *s, uint32_t node, int kind)
{
    sim_world *w = s->w;
    for (uint32_t i = 0; i < w->n_syncs; i++) {
        if (w->syncs[i].node != node || w->syncs[i].kind != kind)
            continue;
        memmove(&w->syncs[i], &w->syncs[i + 1],
                (w->n_syncs - i - 1) * sizeof *w->syncs);
        w->n_syncs--;
        sim_host *h = &w->hosts[node];
        sim_event ev = { .at_ms = w->now_ms, .kind = SIM_EV_FSYNC,
                         .node = node, .a = h->epoch, .b = (uint64_t)kind };
        sim_host_event(w, h, &ev);
        return;
    }
    scn_fail(s, "node %u started no fdatasync of kind %d", node, kind);
}

static bool scn_sync_started(scn *s, uint32_t node, int kind)
{
    for (uint32_t i = 0; i < s->w->n_syncs; i++)
        if (s->w->syncs[i].node == node && s->w->syncs[i].kind == kind)
            return true;
    return false;
}

/* Time moves to t: timers and background work due by then run. */
static void scn_time(scn *s, uint64_t t)
{
    sim_world *w = s->w;
    sim_event ev;
    while (w->q.n && w->q.heap[0].at_ms <= t && sim_queue_pop(&w->q, &ev)) {
        w->now_ms = ev.at_ms;
        if (ev.node >= 1 && ev.node <= w->cfg.nodes)
            sim_host_event(w, &w->hosts[ev.node], &ev);
        free(ev.msg);
    }
    w->now_ms = t;
}

static void scn_put(scn *s, uint32_t node, uint64_t seq, const char *key,
                    const char *value)
{
    uint8_t op[4096];
    int64_t n = kv_op_encode_put(op, sizeof op, key, strlen(key),
                                 (const uint8_t *)value, strlen(value));
    if (n < 0) {
        scn_fail(s, "cannot encode a put");
        return;
    }
    px_request req = { .client_id = 99, .seq = seq, .ack_seq = seq,
                       .len = (uint32_t)n, .op = op };
    sim_host_propose(s->w, &s->w->hosts[node], &req);
}

static bool scn_holds(scn *s, uint32_t node, const char *key,
                      const char *value)
{
    const kv *state = sim_host_state(&s->w->hosts[node]);
    const kv_value *v = state ? kv_get(state, key, strlen(key)) : NULL;
    return v && v->len == strlen(value) && memcmp(v->data, value, v->len) == 0;
}

/* A world of `nodes` nodes, started, nothing sent yet. */
static sim_world *scn_world(scn *s, uint32_t nodes, uint32_t retain)
{
    static sim_world world;
    sim_world *w = &world;
    sim_config cfg;
    sim_default_config(&cfg, 1, nodes, sim_profile_by_name("calm"));
    cfg.clients = 0;
    cfg.retain_slots = retain;
    cfg.window_slots = 8;
    cfg.batch_max_requests = 16;
    cfg.acceptor_log_bytes = 65536;
    cfg.segment_bytes = 0;
    cfg.sync_off_loop = true;    /* every fdatasync is one the script ends */
    cfg.chain_sync_ms = 100000;  /* no background chain syncs */
    if (sim_world_init(w, &cfg, s->out) < 0) {
        scn_fail(s, "cannot set up the world");
        return NULL;
    }
    w->scripted = true;
    w->healed = true;
    for (uint32_t n = 1; n <= nodes; n++) {
        sim_host *h = &w->hosts[n];
        h->opt.heartbeat_interval_ms = 10000;
        h->opt.election_timeout_min_ms = n == 1 ? 100 : 1000000;
        h->opt.election_timeout_max_ms = n == 1 ? 101 : 1000001;
        h->opt.retry_interval_ms = 5000;
        h->opt.commit_notice_ms = 5000;
        h->opt.thrifty = false;
        /* no read lease: a restarted voter would promise nobody for a
         * lease's length (half its election timeout, far away here) */
        h->opt.lease_ms = 0;
        sim_host_start(w, h);
    }
    s->w = w;
    /* the first records of a new store (sim_host_start) become durable */
    while (w->n_syncs && !s->failed)
        scn_sync(s, w->syncs[0].node, w->syncs[0].kind);
    return w;
}

/* Node 1 becomes leader of ballot 2.1 with every other node's promise,
 * and commits the no-op a new leader starts with (slot 1) with node 2's
 * vote; whatever else was sent is dropped. */
static void scn_elect_node1(scn *s)
{
    sim_world *w = s->w;
    scn_time(s, 101);
    uint32_t n = w->cfg.nodes;
    static const char *const prep1[] = {"", "", "PREPARE 1>2 b=1.1",
                                        "PREPARE 1>3 b=1.1"};
    static const char *const prom1[] = {"", "", "PROMISE 2>1 b=1.1",
                                        "PROMISE 3>1 b=1.1"};
    static const char *const prep2[] = {"", "", "PREPARE 1>2 b=2.1",
                                        "PREPARE 1>3 b=2.1"};
    static const char *const prom2[] = {"", "", "PROMISE 2>1 b=2.1",
                                        "PROMISE 3>1 b=2.1"};
    for (uint32_t k = 2; k <= n && k <= 3; k++)
        scn_deliver(s, prep1[k]);
    for (uint32_t k = 2; k <= n && k <= 3; k++)
        scn_deliver(s, prom1[k]);
    for (uint32_t k = 2; k <= n && k <= 3; k++) {
        scn_deliver(s, prep2[k]);
        scn_sync(s, k, HOST_SYNC_ACCEPTOR);
    }
    for (uint32_t k = 2; k <= n && k <= 3; k++)
        scn_deliver(s, prom2[k]);
    scn_sync(s, 1, HOST_SYNC_ACCEPTOR);    /* its promise */
    scn_sync(s, 1, HOST_SYNC_ACCEPTOR);    /* the no-op it accepted */
    scn_deliver(s, "ACCEPT 1>2 b=2.1");
    scn_sync(s, 2, HOST_SYNC_ACCEPTOR);
    scn_deliver(s, "ACCEPTED 2>1 b=2.1");
    if (sim_host_applied(&w->hosts[1]) != 1)
        scn_fail(s, "the new leader did not commit its no-op");
    scn_drop_all(s);
}

/* ---------------------------------------------------------- scenarios */

/* Node 1 times out and runs its probe round with node 2's answer; its
 * real PREPARE (ballot 2.1) is sent, not yet delivered. */
static void scn_prepare_round(scn *s)
{
    scn_time(s, 101);
    SENT(s, "PREPARE 1>2 b=1.1 slot=1 commit=0 aux=1",
            "PREPARE 1>3 b=1.1 slot=1 commit=0 aux=1");
    scn_deliver(s, "PREPARE 1>2 b=1.1");
    SENT(s, "PROMISE 2>1 b=1.1 slot=0 commit=0 aux=1");   /* a probe */
    scn_deliver(s, "PROMISE 2>1 b=1.1");
    SENT(s, "PREPARE 1>2 b=2.1 slot=1 commit=0 aux=0",
            "PREPARE 1>3 b=2.1 slot=1 commit=0 aux=0");
}

/* A follower's PROMISE leaves only once its fdatasync returned. */
static void scn_promise_waits_for_fdatasync(scn *s)
{
    if (!scn_world(s, 3, 64))
        return;
    scn_prepare_round(s);
    scn_deliver(s, "PREPARE 1>2 b=2.1");
    NOTHING(s);                 /* the promise is written, not yet synced */
    if (!scn_sync_started(s, 2, HOST_SYNC_ACCEPTOR))
        scn_fail(s, "node 2 started no fdatasync for its promise");
    scn_sync(s, 2, HOST_SYNC_ACCEPTOR);
    SENT(s, "PROMISE 2>1 b=2.1 slot=1 commit=0 aux=0");
}

/* The leader's ACCEPT leaves while its own fdatasync runs; it commits
 * only once a quorum vouched durably: its own vote after its fdatasync,
 * a follower's ACCEPTED after the follower's. */
static void scn_leader_commits_after_durable_quorum(scn *s)
{
    if (!scn_world(s, 3, 64))
        return;
    scn_elect_node1(s);
    scn_put(s, 1, 1, "k0", "a");
    SENT(s, "ACCEPT 1>2 b=2.1 slot=0 commit=1 aux=0 entries=2..2",
            "ACCEPT 1>3 b=2.1 slot=0 commit=1 aux=0 entries=2..2");
    scn_deliver(s, "ACCEPT 1>2");
    NOTHING(s);                 /* held until node 2's fdatasync */
    scn_sync(s, 2, HOST_SYNC_ACCEPTOR);
    SENT(s, "ACCEPTED 2>1 b=2.1 slot=2 commit=1 aux=3");
    scn_deliver(s, "ACCEPTED 2>1");
    if (scn_holds(s, 1, "k0", "a"))
        scn_fail(s, "committed before the leader's own vote was durable");
    scn_sync(s, 1, HOST_SYNC_ACCEPTOR);
    if (!scn_holds(s, 1, "k0", "a"))
        scn_fail(s, "not committed once a quorum vouched durably (applied "
                 "%" PRIu64 ")", sim_host_applied(&s->w->hosts[1]));
    NOTHING(s);
}

/* Group commit: two ACCEPTs written while one fdatasync runs are vouched
 * for by one ACCEPTED after the next fdatasync (outbox invariant 3). */
static void scn_group_commit_one_accepted(scn *s)
{
    if (!scn_world(s, 3, 64))
        return;
    scn_elect_node1(s);
    scn_put(s, 1, 1, "k0", "a");
    scn_put(s, 1, 2, "k1", "b");
    SENT(s, "ACCEPT 1>2 b=2.1 slot=0 commit=1 aux=0 entries=2..2",
            "ACCEPT 1>3 b=2.1 slot=0 commit=1 aux=0 entries=2..2",
            "ACCEPT 1>2 b=2.1 slot=0 commit=1 aux=0 entries=3..3",
            "ACCEPT 1>3 b=2.1 slot=0 commit=1 aux=0 entries=3..3");
    scn_deliver(s, "ACCEPT 1>2 b=2.1 slot=0 commit=1 aux=0 entries=2..2");
    scn_deliver(s, "ACCEPT 1>2 b=2.1 slot=0 commit=1 aux=0 entries=3..3");
    NOTHING(s);                 /* slot 3 written while slot 2 syncs */
    scn_sync(s, 2, HOST_SYNC_ACCEPTOR);          /* covers slot 2 only */
    NOTHING(s);
    scn_sync(s, 2, HOST_SYNC_ACCEPTOR);          /* started at once */
    SENT(s, "ACCEPTED 2>1 b=2.1 slot=3 commit=1 aux=4");
}

/* A promise written but not synced is gone after a crash: the restarted
 * node promises again, and only after its fdatasync. */
static void scn_crash_loses_unsynced_promise(scn *s)
{
    if (!scn_world(s, 3, 64))
        return;
    sim_world *w = s->w;
    scn_prepare_round(s);
    scn_deliver(s, "PREPARE 1>2 b=2.1");
    NOTHING(s);
    fdisk_set_crash_mode(2, FDISK_CRASH_NONE);
    sim_host_crash(w, &w->hosts[2]);
    w->n_syncs = 0;
    sim_host_start(w, &w->hosts[2]);
    if (px_ballot_cmp(w->hosts[2].d_promise, (px_ballot){2, 1}) >= 0)
        scn_fail(s, "the unsynced promise survived the crash");
    NOTHING(s);
    /* the candidate's PREPARE again (a retry) */
    px_msg again = { .type = PX_MSG_PREPARE, .from = 1, .to = 2,
                     .ballot = {2, 1}, .slot = 1 };
    sim_event ev = { .at_ms = w->now_ms, .kind = SIM_EV_DELIVER, .node = 2,
                     .msg = &again };
    sim_host_event(w, &w->hosts[2], &ev);
    NOTHING(s);
    scn_sync(s, 2, HOST_SYNC_ACCEPTOR);
    SENT(s, "PROMISE 2>1 b=2.1 slot=1 commit=0 aux=0");
}

/* A torn write of the acceptor store (an accepted value of several
 * sectors, only its first one on the disk) is cut at the next start as
 * torn, not taken for damage, and the value is not vouched for. */
static void scn_torn_acceptor_write_is_cut(scn *s)
{
    if (!scn_world(s, 3, 64))
        return;
    sim_world *w = s->w;
    scn_elect_node1(s);
    char big[2001];
    memset(big, 'x', 2000);
    big[2000] = '\0';
    scn_put(s, 1, 1, "k0", big);
    SENT(s, "ACCEPT 1>2 b=2.1 slot=0 commit=1 aux=0 entries=2..2",
            "ACCEPT 1>3 b=2.1 slot=0 commit=1 aux=0 entries=2..2");
    scn_deliver(s, "ACCEPT 1>2");
    NOTHING(s);
    fdisk_set_crash_mode(2, FDISK_CRASH_TEAR);
    sim_host_crash(w, &w->hosts[2]);
    w->n_syncs = 0;
    sim_host_start(w, &w->hosts[2]);
    if (!w->hosts[2].host) {
        scn_fail(s, "node 2 did not start again: %s", w->violation);
        return;
    }
    host_open_report r;
    host_get_open_report(w->hosts[2].host, &r);
    if (!r.acceptor_torn || r.acceptor_lost)
        scn_fail(s, "the torn write was not cut as torn (torn %d lost %d)",
                 r.acceptor_torn, r.acceptor_lost);
    if (px_recovering(w->hosts[2].px))
        scn_fail(s, "a torn write made the node recover");
    for (uint32_t i = 0; i < w->hosts[2].d_n; i++)
        if (w->hosts[2].d_acc[i].slot == 2)
            scn_fail(s, "the torn value came back from the disk");
    NOTHING(s);
}

/* A failed fdatasync: nothing it should have covered is vouched for, and
 * the node stops writing (it crashes and restarts in the simulator). */
static void scn_failed_fdatasync_vouches_nothing(scn *s)
{
    if (!scn_world(s, 3, 64))
        return;
    sim_world *w = s->w;
    scn_prepare_round(s);
    fdisk_faults f = { .on = true, .fail_ppm = 1000000, .only_syncs = true };
    fdisk_set_faults(2, &f);
    scn_deliver(s, "PREPARE 1>2 b=2.1");   /* its fdatasync fails ... */
    fdisk_faults off = {0};
    fdisk_set_faults(2, &off);
    NOTHING(s);
    if (!w->hosts[2].alive)
        scn_fail(s, "node 2 stopped before its fdatasync returned");
    scn_sync(s, 2, HOST_SYNC_ACCEPTOR);    /* ... as it returns */
    if (w->hosts[2].alive)
        scn_fail(s, "node 2 goes on after its fdatasync failed");
    NOTHING(s);
}

/* Catch-up from the chain: a node that missed more than the leader
 * retains is sent the blocks from the leader's chain (the chain holds
 * them all: its base is 0, so no SNAPSHOT_NEEDED). */
static void scn_catchup_from_the_chain(scn *s)
{
    if (!scn_world(s, 3, 4))
        return;
    sim_world *w = s->w;
    scn_elect_node1(s);
    for (uint64_t seq = 1; seq <= 12; seq++) {
        char key[8];
        snprintf(key, sizeof key, "k%" PRIu64, seq % 4);
        scn_put(s, 1, seq, key, "v");
        scn_deliver(s, "ACCEPT 1>2");
        scn_sync(s, 2, HOST_SYNC_ACCEPTOR);
        scn_sync(s, 1, HOST_SYNC_ACCEPTOR);
        scn_deliver(s, "ACCEPTED 2>1");
        scn_drop_all(s);                    /* node 3 hears nothing */
    }
    if (sim_host_applied(&w->hosts[1]) != 13)
        scn_fail(s, "the leader applied %" PRIu64 " of 13",
                 sim_host_applied(&w->hosts[1]));
    /* node 3 asks for slot 1; the leader keeps only 4 slots */
    px_msg req = { .type = PX_MSG_CATCHUP_REQ, .from = 3, .to = 1,
                   .ballot = {2, 1}, .slot = 1 };
    sim_event ev = { .at_ms = w->now_ms, .kind = SIM_EV_DELIVER, .node = 1,
                     .msg = &req };
    sim_host_event(w, &w->hosts[1], &ev);
    SENT(s, "CATCHUP 1>3 b=2.1 slot=1 commit=13 aux=0 entries=1..13");
    scn_deliver(s, "CATCHUP 1>3");
    if (sim_host_applied(&w->hosts[3]) != 13)
        scn_fail(s, "node 3 applied %" PRIu64 " of 13 from the catch-up",
                 sim_host_applied(&w->hosts[3]));
}

typedef struct scn_entry {
    const char *name;
    void (*run)(scn *s);
} scn_entry;

static const scn_entry scn_all[] = {
    {"promise-waits-for-fdatasync", scn_promise_waits_for_fdatasync},
    {"leader-commits-after-durable-quorum",
     scn_leader_commits_after_durable_quorum},
    {"group-commit-one-accepted", scn_group_commit_one_accepted},
    {"crash-loses-unsynced-promise", scn_crash_loses_unsynced_promise},
    {"torn-acceptor-write-is-cut", scn_torn_acceptor_write_is_cut},
    {"failed-fdatasync-vouches-nothing",
     scn_failed_fdatasync_vouches_nothing},
    {"catchup-from-the-chain", scn_catchup_from_the_chain},
};

int sim_run_scenarios(FILE *out, uint32_t *passed, uint32_t *failed)
{
    uint32_t n = (uint32_t)(sizeof scn_all / sizeof scn_all[0]), ok = 0;
    for (uint32_t i = 0; i < n; i++) {
        scn s = { .out = out, .name = scn_all[i].name,
                  .print = getenv("SIM_SCENARIO_PRINT") != NULL };
        scn_all[i].run(&s);
        if (s.w)
            sim_world_free(s.w);
        if (s.failed) {
            (*failed)++;
        } else {
            (*passed)++;
            ok++;
        }
    }
    fprintf(out, "sim: scenarios %u/%u passed\n", ok, n);
    return 0;
}
