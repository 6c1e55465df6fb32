/*
 * host.c - owns the glue between a simulated node and its production
 * state-machine host (node/host.h): the host runs as in a real node, in
 * driven mode (no threads), on the fake disk (disk.c), with simulated
 * time and the virtual network as its edges.
 *
 *   event (deliver, timer, fdatasync done, client request)
 *     --> host_step / host_sync_done        (replica, commit rule, apply)
 *     --> host_flush, host_background       (the end of a loop turn)
 *     --> a storage failure: the node crashes and restarts (a node that
 *         cannot write stops; its supervisor starts it again); in the
 *         sickdisk profile it stays up instead, as a node does: the host
 *         suspends the replica, and once the disk works again a probe
 *         with back-off (net/health.c in a node) reopens the stores and
 *         builds a new replica (host_reopen), the key-value state kept
 *
 *   edges: send -> durability check at the moment a message leaves
 *                  (check.c), then the network;
 *          output -> reads, refused requests, timer, recovery end;
 *          sync_runs -> the fake disk defers what the fdatasync covers;
 *                  an FSYNC event after the profile's latency makes it
 *                  durable and completes the host's fdatasync;
 *          applied -> agreement, prefix and chain-hash checks.
 *
 * What a real node adds and the simulator leaves out: the start gate and
 * divergence checks (node/integrity.c; a node that lost its acceptor
 * state is told so at its start, as the start gate would find out from
 * its peers), the vouching of catch-up blocks (node/catchup.c), the
 * client handle, FUSE and sockets.
 *
 * Invariants:
 *   1. A host is never re-entered: edges only record and schedule; a
 *      crash after a storage failure happens after the host call
 *      returned.
 *   2. Every event carries the epoch it was made for; a crash bumps the
 *      epoch, so timers and syncs of a dead incarnation do nothing.
 *   3. Everything a node keeps over a crash is on the fake disk; the glue
 *      keeps only what a real node's neighbours or operator would know
 *      (recovering, a lost state, flipped bits to judge).
 *   4. The replica of a host whose storage failed (suspended) puts out no
 *      message, no persist step and no committed entry, and neither leads
 *      nor campaigns (checked in e_output for the host calls that began
 *      with the storage failed: the output of the step during which the
 *      disk failed was made before).
 */
#include "sim.h"
#include "disk.h"
#include "../../node/reads.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SIM_WALL_BASE_MS 1700000000000ull   /* the wall clock's epoch */
#define SIM_BG_MS 100                       /* the loop's poll timeout */

/* ------------------------------------------------------------ edges */

/* The host's monotonic clock at simulated time `t`. */
static uint64_t sim_host_mono(const sim_host *h, uint64_t t)
{
    int64_t m = (int64_t)t + (int64_t)t * h->rate_ppm / 1000000;
    return m > 0 ? (uint64_t)m : 0;
}

/* The first simulated time (not before now) at which the host's clock
 * reads `mono` or later. */
static uint64_t sim_host_when(const sim_host *h, uint64_t mono)
{
    uint64_t t = (uint64_t)((double)mono * 1000000.0 /
                            (1000000.0 + (double)h->rate_ppm));
    if (t > 0)
        t--;
    while (sim_host_mono(h, t) < mono)
        t++;
    return t < h->w->now_ms ? h->w->now_ms : t;
}

static uint64_t e_now(void *arg)
{
    sim_host *h = arg;
    return sim_host_mono(h, h->w->now_ms);
}

static uint64_t e_wall(void *arg)
{
    sim_host *h = arg;
    int64_t t = (int64_t)(SIM_WALL_BASE_MS + h->w->now_ms) + h->wall_offset_ms +
                (int64_t)h->w->now_ms * h->drift_ppm / 1000000;
    return t > 0 ? (uint64_t)t : 0;
}

static void e_send(void *arg, const px_msg *m)
{
    sim_host *h = arg;
    sim_world *w = h->w;
    sim_trace_msg(w, h->id, SIM_TR_MSG_OUT, m);
    sim_check_vouch(w, h, m);
    sim_net_send(w, m);
}

/* next_ms: on the host's own clock; the timer fires at the simulated
 * time that clock reads it. */
static void sim_arm_timer(sim_world *w, sim_host *h, uint64_t next_ms)
{
    if (next_ms == 0)
        return;
    uint64_t at = sim_host_when(h, next_ms);
    if (h->timer_at_ms && h->timer_at_ms <= at)
        return;
    h->timer_at_ms = at;
    h->timer_gen++;
    sim_schedule(w, at, SIM_EV_TIMER, h->id, h->epoch, h->timer_gen);
}

static void sim_serve_reads(sim_world *w, sim_host *h)
{
    if (h->granted_reads == 0 || !h->host)
        return;
    uint64_t applied = sim_host_applied(h);
    for (uint32_t ci = 0; ci < w->n_clients; ci++) {
        sim_client *c = &w->clients[ci];
        for (uint32_t i = 0; i < c->window; i++) {
            sim_op *op = &c->ops[i];
            if (!op->busy || op->type != SIM_OP_GET || !op->read_granted ||
                op->node != h->id || op->node_epoch != h->epoch ||
                op->read_index > applied)
                continue;
            size_t klen;
            const char *key = sim_key_name(op->key, &klen);
            h->granted_reads--;
            op->read_granted = false;
            sim_client_on_read(w, op->read_token, 0,
                               kv_get(host_state(h->host), key, klen), h->id);
        }
    }
}

static sim_op *sim_op_for_token(sim_world *w, uint64_t token)
{
    uint32_t ci = (uint32_t)(token >> 48), oi = (uint32_t)(token >> 40) & 0xff;
    if (ci >= w->n_clients || oi >= w->clients[ci].window)
        return NULL;
    sim_op *op = &w->clients[ci].ops[oi];
    return op->busy && op->read_token == token ? op : NULL;
}

static void sim_reads(sim_world *w, sim_host *h, const px_read_ready *rd,
                      uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        sim_op *op = sim_op_for_token(w, rd[i].read_token);
        sim_trace_note(w, h->id, SIM_TR_READ, rd[i].status ? "read refused"
                       : "read granted", rd[i].index, 0);
        if (!op || op->node != h->id || op->node_epoch != h->epoch ||
            op->read_granted)
            continue;
        if (rd[i].status != 0) {
            sim_client_on_read(w, rd[i].read_token, rd[i].status, NULL,
                               h->id);
            continue;
        }
        op->read_granted = true;
        op->read_index = rd[i].index;
        h->granted_reads++;
    }
}

static bool sim_is_vote(uint8_t type)
{
    return type == PX_MSG_PROMISE || type == PX_MSG_ACCEPTED ||
           type == PX_MSG_REJECT || type == PX_MSG_HEARTBEAT_ACK;
}

static void e_output(void *arg, const px_output *o)
{
    sim_host *h = arg;
    sim_world *w = h->w;
    if (o->recovered) {
        h->recovering = false;
        sim_trace_note(w, h->id, SIM_TR_FAULT, "recovered, voting again",
                       sim_host_applied(h), 0);
    }
    if (px_recovering(h->px))
        for (uint32_t i = 0; i < o->n_msgs; i++)
            if (sim_is_vote(o->msgs[i].type))
                sim_violation(w, "node %u voted (message type %u) while "
                              "recovering lost acceptor state", h->id,
                              o->msgs[i].type);
    if (h->step_failed &&
        (o->n_msgs || o->persist_promise || o->n_accepts || o->n_committed ||
         px_role(h->px) == PX_LEADER || px_role(h->px) == PX_CANDIDATE))
        sim_violation(w, "node %u took part while its disk failed: %u "
                      "messages, persist %d, %u committed, role %u", h->id,
                      o->n_msgs, o->persist_promise || o->n_accepts,
                      o->n_committed, px_role(h->px));
    if (o->persist_promise || o->n_accepts) {
        sim_trace_rec r = {.kind = SIM_TR_PERSIST, .ballot = o->promise,
                           .n = o->n_accepts,
                           .slot = o->n_accepts ? o->accepts[0].slot : 0,
                           .aux = o->n_accepts ?
                                  o->accepts[o->n_accepts - 1].slot : 0};
        sim_trace_add(w, h->id, &r);
    }
    if (o->n_committed) {
        sim_trace_rec r = {.kind = SIM_TR_COMMIT, .slot = o->committed[0].slot,
                           .aux = o->committed[o->n_committed - 1].slot,
                           .n = o->n_committed};
        sim_trace_add(w, h->id, &r);
    }
    sim_arm_timer(w, h, o->next_tick_ms);
    sim_reads(w, h, o->reads, o->n_reads);
    for (uint32_t i = 0; i < o->n_failed; i++)
        sim_client_on_write_failed(w, o->failed[i].client_id,
                                   o->failed[i].seq, o->failed[i].status,
                                   h->id);
    if (o->n_reads || o->n_committed)
        sim_serve_reads(w, h);
}

static void e_result(void *arg, uint64_t client_id, uint64_t seq,
                     int32_t result, uint64_t slot)
{
    sim_host *h = arg;
    sim_check_result(h->w, h->id, client_id, seq, result, slot);
    sim_client_on_write(h->w, client_id, seq, result, h->id);
}

/* A storage failure is expected only from an injected EIO or ENOSPC;
 * anything else (a chain append refused, a committed entry that cannot
 * be applied) is a bug the failure would otherwise hide. */
static void e_failed(void *arg, const char *what, int rc)
{
    sim_host *h = arg;
    sim_trace_note(h->w, h->id, SIM_TR_FAULT, "storage failed", (uint64_t)-rc,
                   0);
    if (rc != -EIO && rc != -ENOSPC)
        sim_violation(h->w, "node %u: %s failed with %d (%s), not an "
                      "injected disk failure", h->id, what, rc, strerror(-rc));
}

static uint64_t e_catchup_from(void *arg, uint32_t peer)
{
    sim_host *h = arg;
    if (peer == 0 || peer > h->w->cfg.nodes)
        return 0;
    return h->peer_commit[peer] + 1;
}

static bool e_serving(void *arg)
{
    sim_host *h = arg;
    return h->w->cfg.sync_off_loop;
}

/* An fdatasync of the host begins or has run its calls to the disk: the
 * fake disk makes what they cover durable only when the FSYNC event
 * completes it, after the profile's latency (or, scripted, when the
 * script says). */
static void e_sync_runs(void *arg, int kind, bool begin)
{
    sim_host *h = arg;
    sim_world *w = h->w;
    if (kind < 1 || kind > 2) {
        sim_violation(w, "node %u: fdatasync of kind %d", h->id, kind);
        return;
    }
    if (begin) {
        if (h->sync_due[kind])
            sim_violation(w, "node %u: fdatasync of kind %d started while "
                          "one runs", h->id, kind);
        h->sync_due[kind] = true;
        h->sync_ticket[kind] = ++w->next_ticket;
        fdisk_defer_begin(h->id, h->sync_ticket[kind]);
        if (kind == HOST_SYNC_ACCEPTOR)
            sim_durable_capture(w, h);
        return;
    }
    fdisk_defer_end(h->id);
    if (w->scripted) {              /* the script completes it */
        if (w->n_syncs < 64)
            w->syncs[w->n_syncs++] = (sim_sync_ref){ h->id, kind };
        return;
    }
    uint64_t max = w->cfg.profile->fsync_max_ms;
    if (kind == HOST_SYNC_CHAIN)
        max *= 3;
    sim_schedule(w, w->now_ms + sim_rng_range(&w->rng, 0, max), SIM_EV_FSYNC,
                 h->id, h->epoch, (uint64_t)kind);
}

static void e_applied(void *arg, const px_entry *e,
                      const uint8_t hash[CHAIN_HASH_BYTES])
{
    sim_host *h = arg;
    sim_check_committed(h->w, h->id, e);
    sim_check_applied(h->w, h->id, e, hash);
}

static void e_log(void *arg, const char *line)
{
    sim_host *h = arg;
    if (h->w->cfg.trace_live && h->w->out)
        fprintf(h->w->out, "  %8llu n%u log: %s\n",
                (unsigned long long)h->w->now_ms, h->id, line);
}

static void sim_edges(sim_host *h, host_edges *e)
{
    *e = (host_edges){
        .arg = h,
        .now_ms = e_now,
        .wall_ms = e_wall,
        .send = e_send,
        .output = e_output,
        .result = e_result,
        .failed = e_failed,
        .catchup_from = e_catchup_from,
        .serving = e_serving,
        .sync_runs = e_sync_runs,
        .applied = e_applied,
        .log = e_log,
    };
}

/* -------------------------------------------------- a loop turn */

static void sim_restart_later(sim_world *w, sim_host *h, uint64_t lo,
                              uint64_t hi)
{
    sim_schedule(w, w->now_ms + sim_rng_range(&w->rng, lo, hi),
                 SIM_EV_RESTART, h->id, h->epoch, 1);
}

#define SIM_REOPEN_MIN_MS 100       /* net/health.h's back-off */
#define SIM_REOPEN_MAX_MS 2000

static void sim_probe_later(sim_world *w, sim_host *h)
{
    sim_schedule(w, w->now_ms + h->reopen_backoff_ms, SIM_EV_REOPEN, h->id,
                 h->epoch, 0);
    h->reopen_backoff_ms *= 2;
    if (h->reopen_backoff_ms > SIM_REOPEN_MAX_MS)
        h->reopen_backoff_ms = SIM_REOPEN_MAX_MS;
}

/* The end of a loop turn: write and sync (group commit), background
 * work; a node whose storage failed crashes and comes back later, or
 * (sickdisk) stays up suspended and probes until it can reopen. */
static void sim_turn_end(sim_world *w, sim_host *h)
{
    if (!h->alive || !h->host || h->suspended)
        return;
    host_flush(h->host);
    host_background(h->host, sim_host_mono(h, w->now_ms));
    if (!host_failed(h->host))
        return;
    if (w->cfg.profile->sick_disks) {
        h->suspended = true;
        h->reopen_backoff_ms = SIM_REOPEN_MIN_MS;
        sim_trace_note(w, h->id, SIM_TR_FAULT, "suspended, probing",
                       sim_host_applied(h), 0);
        sim_probe_later(w, h);
        return;
    }
    sim_host_crash(w, h);
    sim_restart_later(w, h, 30, 500);
}

static int sim_step(sim_world *w, sim_host *h, px_event *ev)
{
    w->stats.steps++;
    h->in_step = true;
    h->step_failed = host_failed(h->host) != 0;   /* before: e_output */
    int rc = host_step(h->host, ev);
    h->in_step = false;
    sim_turn_end(w, h);
    return rc;
}

/* --------------------------------------------------------- life cycle */

int sim_host_init(sim_world *w, sim_host *h, uint32_t id)
{
    memset(h, 0, sizeof(*h));
    h->w = w;
    h->id = id;
    px_options_default(&h->opt, id);
    h->opt.members = w->members;
    h->opt.heartbeat_interval_ms = 50;
    h->opt.election_timeout_min_ms = 300;
    h->opt.election_timeout_max_ms = 600;
    h->opt.retry_interval_ms = 100;
    h->opt.batch_max_requests = w->cfg.batch_max_requests;
    if (w->cfg.window_slots)
        h->opt.window_slots = w->cfg.window_slots;
    if (w->cfg.retain_slots)
        h->opt.retain_slots = w->cfg.retain_slots;
    h->chain_sync_ms = w->cfg.chain_sync_ms ? w->cfg.chain_sync_ms : 200;
    if (w->cfg.profile->clock_steps)
        h->drift_ppm = (int32_t)sim_rng_range(&w->rng, 0, 2000) - 1000;
    if (w->cfg.profile->clock_rate_ppm && !h->rate_ppm)   /* kept across
                                                             restarts */
        h->rate_ppm = (int32_t)sim_rng_range(
            &w->rng, 0, 2 * w->cfg.profile->clock_rate_ppm) -
            (int32_t)w->cfg.profile->clock_rate_ppm;
    return 0;
}

static void sim_drop_deferred(sim_host *h)
{
    for (uint32_t i = 0; i < h->n_deferred; i++)
        free(h->deferred[i].msg);
    h->n_deferred = 0;
}

void sim_host_free(sim_host *h)
{
    if (h->host)
        host_close(h->host, false);
    h->host = NULL;
    sim_drop_deferred(h);
    free(h->deferred);
    sim_durable_clear(h);
    free(h->d_acc);
    free(h->c_acc);
    memset(h, 0, sizeof(*h));
}

/* A flipped bit must be found by the store that holds it: the chain
 * refuses to open (damage), or cuts it away as a torn tail; the acceptor
 * store keeps the log aside and recovers, or cuts a torn last write. */
static void sim_judge_flips(sim_world *w, sim_host *h, bool recovering)
{
    host_open_report r;
    host_get_open_report(h->host, &r);
    for (uint32_t i = 0; i < h->n_flips; i++) {
        const sim_flip *f = &h->flips[i];
        bool found;
        /* recovering: found by an earlier attempt to start, which kept
         * the damaged log aside before an injected failure stopped it
         * (acceptor flips are made only while nobody recovers) */
        if (f->which == 0)
            found = r.acceptor_lost || recovering ||
                    (r.acceptor_torn && f->bit / 8 >= r.acceptor_torn_offset) ||
                    /* or cut by an earlier attempt to start, which zeroed
                     * a torn last write (the flipped bit in it or in the
                     * zero space after the last record) before an injected
                     * failure stopped it: the bit is back to its value
                     * from before the flip */
                    (f->tried &&
                     fdisk_bit(h->id, f->rel, f->bit) == !f->flipped);
        else
            found = r.chain_torn && strstr(r.chain_torn_path, f->rel) &&
                    f->bit / 8 >= r.chain_torn_offset;
        if (!found)
            sim_violation(w, "DISK: node %u opened its stores without noticing "
                          "the bit flipped in %s at byte %llu", h->id, f->rel,
                          (unsigned long long)(f->bit / 8));
    }
    h->n_flips = 0;
}

/* The chain refused to open: a flipped bit was found (else it is a bug).
 * The operator puts the byte back (restores it from a copy). */
static bool sim_repair_flips(sim_world *w, sim_host *h, const char *err)
{
    uint32_t k = 0;
    for (uint32_t i = 0; i < h->n_flips; i++) {
        const sim_flip *f = &h->flips[i];
        if (f->which == 1) {
            fdisk_unflip(h->id, f->rel, f->bit);
            sim_trace_note(w, h->id, SIM_TR_FAULT, "chain damage found, byte "
                           "restored", f->bit / 8, 0);
        } else {
            h->flips[k++] = *f;
        }
    }
    if (k == h->n_flips) {
        sim_violation(w, "DISK: node %u: chain damaged without a flipped bit: "
                      "%s", h->id, err);
        return false;
    }
    h->n_flips = k;
    return true;
}

int sim_host_start(sim_world *w, sim_host *h)
{
    if (h->alive)
        return 0;
    host_config hc = {
        .id = h->id,
        .data_dir = fdisk_root(h->id),
        .px = h->opt,
        .chain_sync_interval_ms = h->chain_sync_ms,
        .driven = true,
        .acceptor_log_bytes = w->cfg.acceptor_log_bytes,
        .chain_segment_bytes = w->cfg.segment_bytes,
    };
    hc.px.seed = w->cfg.seed * 1000003u + h->id * 7919u + h->epoch;
    host_edges edges;
    sim_edges(h, &edges);
    char why[HOST_WHY_BYTES], err[1024];
    int rc = -EBADMSG;
    for (int attempt = 0; attempt < 3 && rc == -EBADMSG; attempt++) {
        rc = host_open(&hc, &edges, &h->host, why, err, sizeof err);
        if (rc == -EBADMSG && !sim_repair_flips(w, h, err))
            return rc;
    }
    if (rc < 0) {
        if ((rc == -EIO || rc == -ENOSPC) && !w->healed) {
            /* an injected failure during the start: try again later */
            sim_trace_note(w, h->id, SIM_TR_FAULT, "start failed, retry",
                           (uint64_t)-rc, 0);
            for (uint32_t i = 0; i < h->n_flips; i++)
                h->flips[i].tried = true;
            h->epoch++;
            sim_restart_later(w, h, 20, 300);
            return 0;
        }
        sim_violation(w, "node %u cannot start: %s (%d)", h->id, err, rc);
        return rc;
    }
    sim_judge_flips(w, h, why[0] != '\0');
    h->px = host_replica(h->host);
    /* the host set the replica's chain base from its chain (0: it never
     * compacts here, so a lagging peer always gets chain blocks, never
     * SNAPSHOT_NEEDED, which the simulator does not serve) */
    if (px_chain_base(h->px) != chain_base_index(host_chain(h->host)))
        sim_violation(w, "node %u: replica chain base %llu, chain base %llu",
                      h->id, (unsigned long long)px_chain_base(h->px),
                      (unsigned long long)chain_base_index(
                          host_chain(h->host)));
    if (why[0]) {
        h->recovering = true;
        sim_trace_note(w, h->id, SIM_TR_FAULT, "starts recovering", 0, 0);
        e_log(h, why);
    }
    if (h->lost_state && !px_recovering(h->px))
        host_begin_recovery(h->host);   /* the start gate's finding */
    if (px_recovering(h->px)) {
        h->recovering = true;
        w->lost_state_ever = true;
    }
    h->lost_state = false;
    rc = host_start(h->host);
    if (rc < 0) {
        sim_violation(w, "node %u: host_start = %d", h->id, rc);
        return rc;
    }
    sim_durable_refresh(w, h);
    h->d_chain = chain_synced_index(host_chain(h->host));
    if (w->cfg.profile->amnesia && !h->recovering)
        fdisk_save(h->id);   /* the older copy a rollback restores */
    fdisk_faults f = { .on = w->faults_on,
                       .fail_ppm = w->cfg.profile->disk_fail_ppm,
                       .short_ppm = w->cfg.profile->short_write_ppm };
    fdisk_set_faults(h->id, &f);
    h->alive = true;
    h->paused = false;
    h->suspended = false;
    h->timer_at_ms = 0;
    h->granted_reads = 0;
    memset(h->sync_due, 0, sizeof h->sync_due);
    sim_trace_note(w, h->id, SIM_TR_FAULT, h->epoch ? "restart" : "start",
                   sim_host_applied(h), 0);
    sim_schedule(w, w->now_ms + SIM_BG_MS, SIM_EV_BG, h->id, h->epoch, 0);
    px_event ev = {.type = PX_EV_TICK};
    sim_step(w, h, &ev);
    return 0;
}

/* Some node recovers lost acceptor state, or will at its next start. */
bool sim_anyone_recovering(const sim_world *w)
{
    for (uint32_t i = 1; i <= w->cfg.nodes; i++) {
        const sim_host *h = &w->hosts[i];
        if (h->recovering || h->lost_state)
            return true;
        for (uint32_t k = 0; k < h->n_flips; k++)
            if (h->flips[k].which == 0)
                return true;
    }
    return false;
}

/* Which store a crash may flip a bit in: the chain always (the operator
 * restores the byte once it is found); the acceptor log only where the
 * node can recover from every other voter and nobody else recovers. */
static void sim_maybe_flip(sim_world *w, sim_host *h)
{
    if (!w->faults_on || w->cfg.profile->flip_pct == 0 ||
        h->n_flips >= SIM_MAX_FLIPS ||
        sim_rng_below(&w->rng, 100) >= w->cfg.profile->flip_pct)
        return;
    int which = 1;
    if (w->cfg.nodes >= 3 && !sim_anyone_recovering(w) &&
        sim_rng_below(&w->rng, 2))
        which = 0;
    sim_flip *f = &h->flips[h->n_flips];
    if (fdisk_flip(h->id, which, f->rel, sizeof f->rel, &f->bit) < 0)
        return;
    f->which = which;
    f->flipped = fdisk_bit(h->id, f->rel, f->bit);
    f->tried = false;
    h->n_flips++;
    w->stats.by_kind[SIM_F_FLIP]++;
    if (which == 0) {
        h->lost_state = false;   /* the store itself must notice */
        w->lost_state_ever = true;
    }
    sim_trace_note(w, h->id, SIM_TR_FAULT, which ? "bit flipped in a chain "
                   "segment at" : "bit flipped in the acceptor log at",
                   f->bit / 8, 0);
}

void sim_host_crash(sim_world *w, sim_host *h)
{
    if (!h->alive)
        return;
    sim_trace_note(w, h->id, SIM_TR_FAULT, "crash", sim_host_applied(h), 0);
    host_close(h->host, false);
    h->host = NULL;
    h->px = NULL;
    free(h->c_acc);              /* its fdatasync in flight never completed */
    h->c_acc = NULL;
    h->c_ok = false;
    fdisk_crash(h->id);
    sim_maybe_flip(w, h);
    h->alive = false;
    h->paused = false;
    h->suspended = false;
    h->epoch++;
    sim_drop_deferred(h);
    h->timer_at_ms = 0;
    h->granted_reads = 0;
    memset(h->sync_due, 0, sizeof h->sync_due);
}

void sim_host_lose_state(sim_world *w, sim_host *h, bool rollback)
{
    if (!h->alive)
        return;
    sim_host_crash(w, h);
    if (!(rollback && fdisk_restore(h->id)))
        fdisk_remove_tree(h->id, "acceptor");
    /* what held them is replaced (a rollback) or gone (the store) */
    uint32_t k = 0;
    for (uint32_t i = 0; i < h->n_flips && !rollback; i++)
        if (h->flips[i].which == 1)
            h->flips[k++] = h->flips[i];
    h->n_flips = k;
    h->lost_state = true;
    h->recovering = true;
    w->lost_state_ever = true;
    sim_durable_clear(h);
    sim_trace_note(w, h->id, SIM_TR_FAULT,
                   rollback ? "rolled back to an older copy"
                            : "acceptor store lost", 0, 0);
}

/* The wall clock jumps (NTP, an operator): up to an hour either way. */
void sim_host_clock_step(sim_world *w, sim_host *h)
{
    int64_t step = (int64_t)sim_rng_range(&w->rng, 1000, 3600000);
    if (sim_rng_below(&w->rng, 2))
        step = -step;
    h->wall_offset_ms += step;
    sim_trace_note(w, h->id, SIM_TR_FAULT, step < 0 ? "wall clock stepped back"
                   : "wall clock stepped forward",
                   (uint64_t)(step < 0 ? -step : step), 0);
}

void sim_host_disk_fail(sim_world *w, sim_host *h)
{
    if (h->sick)
        return;
    int err = sim_rng_below(&w->rng, 3) ? -EIO : -ENOSPC;
    h->sick = true;
    h->sick_gen++;
    fdisk_set_sick(h->id, err);
    sim_trace_note(w, h->id, SIM_TR_FAULT, err == -EIO ? "disk fails (EIO)"
                   : "disk full (ENOSPC)", sim_host_applied(h), 0);
}

void sim_host_disk_ok(sim_world *w, sim_host *h)
{
    if (!h->sick)
        return;
    h->sick = false;
    fdisk_set_sick(h->id, 0);
    sim_trace_note(w, h->id, SIM_TR_FAULT, "disk works again",
                   sim_host_applied(h), 0);
}

/* The probe of a suspended host: while its disk fails it fails too (back
 * off and try again); then the host reopens its stores and builds a new
 * replica (host_reopen), which is stepped as a restarted node's is.  An
 * injected failure during the reopen backs off as well; any other is a
 * bug. */
void sim_host_try_reopen(sim_world *w, sim_host *h)
{
    if (!h->alive || !h->suspended || !h->host)
        return;
    if (h->sick) {
        sim_probe_later(w, h);
        return;
    }
    char why[HOST_WHY_BYTES], err[1024] = "";
    uint64_t seed = w->cfg.seed * 1000003u + h->id * 7919u + h->epoch + 1;
    int rc = host_reopen(h->host, h->recovering, seed, why, err, sizeof err);
    if (rc == -EIO || rc == -ENOSPC || rc == -EBUSY) {
        sim_trace_note(w, h->id, SIM_TR_FAULT, "reopen failed, retry",
                       (uint64_t)-rc, 0);
        sim_probe_later(w, h);
        return;
    }
    if (rc < 0) {
        sim_violation(w, "node %u cannot reopen its stores: %s (%d)", h->id,
                      err, rc);
        return;
    }
    /* a new incarnation of the replica: the old one's timers and the
     * acceptor fdatasync in flight (forgotten by the host) do nothing */
    h->suspended = false;
    h->epoch++;
    h->px = host_replica(h->host);
    h->timer_at_ms = 0;
    h->granted_reads = 0;
    memset(h->sync_due, 0, sizeof h->sync_due);
    free(h->c_acc);
    h->c_acc = NULL;
    h->c_ok = false;
    if (why[0]) {
        h->recovering = true;
        w->lost_state_ever = true;
        e_log(h, why);
    }
    if (px_recovering(h->px))
        h->recovering = true;
    sim_durable_refresh(w, h);
    uint64_t c = chain_synced_index(host_chain(h->host));
    if (c > h->d_chain)
        h->d_chain = c;
    sim_trace_note(w, h->id, SIM_TR_FAULT, "stores reopened, chain at",
                   chain_head_index(host_chain(h->host)), 0);
    sim_schedule(w, w->now_ms + SIM_BG_MS, SIM_EV_BG, h->id, h->epoch, 0);
    px_event ev = {.type = PX_EV_TICK};
    sim_step(w, h, &ev);
}

int sim_host_event(sim_world *w, sim_host *h, const sim_event *ev)
{
    switch (ev->kind) {
    case SIM_EV_DELIVER: {
        if (!h->alive)
            return 0;
        const px_msg *m = ev->msg;
        sim_trace_msg(w, h->id, SIM_TR_MSG_IN, m);
        if (m->from >= 1 && m->from <= w->cfg.nodes)
            h->peer_commit[m->from] = m->commit;   /* the last reported */
        px_event pe = {.type = PX_EV_RECEIVE, .u.msg = m};
        sim_step(w, h, &pe);
        return 0;
    }
    case SIM_EV_TIMER: {
        if (!h->alive || ev->a != h->epoch || ev->b != h->timer_gen)
            return 0;
        h->timer_at_ms = 0;
        if (h->last_tick_ms == w->now_ms) {
            if (++h->same_ms_ticks > SIM_SAME_MS_TICKS) {
                sim_violation(w, "node %u: timer livelock at %llu ms", h->id,
                              (unsigned long long)w->now_ms);
                return -ELOOP;
            }
        } else {
            h->same_ms_ticks = 0;
            h->last_tick_ms = w->now_ms;
        }
        px_event pe = {.type = PX_EV_TICK};
        sim_step(w, h, &pe);
        return 0;
    }
    case SIM_EV_FSYNC:
        if (!h->alive || ev->a != h->epoch || ev->b < 1 || ev->b > 2)
            return 0;
        h->sync_due[ev->b] = false;
        fdisk_defer_complete(h->id, h->sync_ticket[ev->b]);
        if (ev->b == HOST_SYNC_ACCEPTOR)
            sim_durable_promote(h);
        h->step_failed = host_failed(h->host) != 0;
        host_sync_done(h->host, (int)ev->b);
        if (h->host && chain_synced_index(host_chain(h->host)) > h->d_chain)
            h->d_chain = chain_synced_index(host_chain(h->host));
        sim_turn_end(w, h);
        return 0;
    case SIM_EV_REOPEN:
        if (h->alive && ev->a == h->epoch && h->suspended)
            sim_host_try_reopen(w, h);
        return 0;
    case SIM_EV_BG:
        if (!h->alive || ev->a != h->epoch)
            return 0;
        sim_turn_end(w, h);
        if (h->alive)
            sim_schedule(w, w->now_ms + SIM_BG_MS, SIM_EV_BG, h->id, h->epoch,
                         0);
        return 0;
    default:
        return -EINVAL;
    }
}

int sim_host_propose(sim_world *w, sim_host *h, const px_request *req)
{
    if (!h->alive || h->paused)
        return -EHOSTDOWN;
    sim_trace_note(w, h->id, SIM_TR_PROPOSE, "propose", req->seq,
                   (uint32_t)req->client_id);
    px_event ev = {.type = PX_EV_PROPOSE,
                   .u.propose = {.requests = req, .n_requests = 1}};
    sim_step(w, h, &ev);
    return 0;
}

int sim_host_change(sim_world *w, sim_host *h, px_event *ev)
{
    if (!h->alive || h->paused || !h->host)
        return -EHOSTDOWN;
    return sim_step(w, h, ev);
}

int sim_host_read(sim_world *w, sim_host *h, uint64_t token, const char *key,
                  size_t key_len)
{
    if (!h->alive || h->paused)
        return -EHOSTDOWN;
    reads_dep dep = { key, key_len };
    uint64_t at = 0;
    /* half the reads take a read point as a listing would (on a lease
     * holder: at every slot it accepted), half as a key read does */
    if ((token & 1) && h->px && px_role(h->px) != PX_LEADER &&
        px_read_now_for(h->px, sim_host_mono(h, w->now_ms), reads_key_depends,
                        &dep, &at) &&
        at) {
        sim_trace_note(w, h->id, SIM_TR_READ, "lease read", at, 0);
        w->stats.lease_reads++;
        px_read_local(h->px, sim_host_mono(h, w->now_ms));
        px_read_ready rd = { .read_token = token, .index = at };
        sim_reads(w, h, &rd, 1);   /* served once applied, as any read */
        return 0;
    }
    sim_trace_note(w, h->id, SIM_TR_READ, "read index", token & 0xffffffffffu,
                   (uint32_t)(token >> 48) + 1);
    px_event ev = {.type = PX_EV_READ_INDEX, .u.read_token = token};
    sim_step(w, h, &ev);
    return 0;
}

int sim_host_change_members(sim_world *w, sim_host *h, const px_members *m)
{
    if (!h->alive || h->paused)
        return -EHOSTDOWN;
    px_event ev = {.type = PX_EV_CHANGE_MEMBERS};
    ev.u.change.members = *m;
    w->stats.steps++;
    h->in_step = true;
    h->step_failed = host_failed(h->host) != 0;
    int rc = host_step(h->host, &ev);
    h->in_step = false;
    sim_turn_end(w, h);
    return rc;
}

uint64_t sim_host_applied(const sim_host *h)
{
    return h->host ? kv_applied_index(host_state(h->host)) : 0;
}

const kv *sim_host_state(const sim_host *h)
{
    return h->host ? host_state(h->host) : NULL;
}

/* The fake disk finished a sync of the acceptor log (or its directory):
 * what the store holds is on the disk now, unless records are still
 * buffered (a sync inside the write that grows the log). */
void sim_host_synced(void *arg, uint32_t vol, const char *rel)
{
    sim_world *w = arg;
    if (vol < 1 || vol > w->cfg.nodes)
        return;
    sim_host *h = &w->hosts[vol];
    if (!h->host || (strcmp(rel, "acceptor/log") != 0 &&
                     strcmp(rel, "acceptor") != 0))
        return;
    if (acceptor_pending_bytes(host_acceptor(h->host)) == 0)
        sim_durable_refresh(w, h);
    uint64_t c = chain_synced_index(host_chain(h->host));
    if (c > h->d_chain)
        h->d_chain = c;
}
