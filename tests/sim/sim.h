/*
 * sim.h - internal interfaces of the paxosfs deterministic simulator.
 *
 * One process runs N nodes, each the production state-machine host
 * (node/host.h: the replica, the commit rule, group commit, apply, the
 * acceptor store and the chain) over a fake disk (disk.c, under
 * chain_io), a virtual network and several clients, in virtual time.
 * Everything random comes from seeded generators, and every event is
 * ordered by (time, sequence number), so one seed replays one run
 * exactly.
 *
 * Files: sim.c (CLI, run loop, fault schedule), net.c (event queue,
 * virtual network), host.c (the glue between a simulated node and its
 * production host), disk.c (the fake disk), client.c (clients, history),
 * check.c (invariant checkers), lincheck.c (linearizability), trace.c
 * (per-node event rings), regressions.c (named seeds), scenario.c
 * (exact-trace scenarios), bench.c.
 */
#ifndef PAXOSFS_SIM_H
#define PAXOSFS_SIM_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "../../chain/chain.h"
#include "../../chain/kv.h"
#include "../../consensus/px.h"
#include "../../node/host.h"

#define SIM_MAX_NODES 7
#define SIM_MAX_CLIENTS 16
#define SIM_MAX_WINDOW 32       /* requests in flight per client */
#define SIM_KEYS 4
#define SIM_SEQ_HINTS 256       /* seq -> op slot lookup (a hint, checked) */
#define SIM_TRACE_RING 48       /* trace records kept per replica */
#define SIM_SAME_MS_TICKS 10000 /* timer firings at one instant = livelock */

/* ------------------------------------------------------------------ rng */

typedef struct sim_rng {
    uint64_t s[4];
} sim_rng;

void sim_rng_seed(sim_rng *r, uint64_t seed);
uint64_t sim_rng_next(sim_rng *r);
uint64_t sim_rng_below(sim_rng *r, uint64_t n);          /* [0, n) */
uint64_t sim_rng_range(sim_rng *r, uint64_t lo, uint64_t hi); /* [lo, hi] */
bool sim_rng_ppm(sim_rng *r, uint32_t per_million);

/* -------------------------------------------------------------- profile */

typedef struct sim_profile {
    const char *name;
    uint32_t drop_ppm;         /* per message, during the fault phase */
    uint32_t dup_ppm;
    uint32_t delay_min_ms;     /* reordering comes from random delays */
    uint32_t delay_max_ms;
    uint32_t fsync_max_ms;     /* 0 = persistence is immediate */
    bool partitions;           /* symmetric splits */
    bool asym_partitions;      /* one-way link cuts */
    bool crashes;
    bool leader_isolation;
    bool pauses;
    bool chain_lag;            /* chain synced lazily: crashes lose a tail */
    bool amnesia;              /* crashes may also lose the acceptor store,
                                  or roll the node back to an older copy
                                  (detected: it restarts recovering) */
    bool forged_ballots;       /* a key holder forges messages with a
                                  ballot at the end of the round space */
    uint32_t disk_fail_ppm;    /* EIO/ENOSPC per disk call (fault phase) */
    uint32_t short_write_ppm;  /* short writes per write */
    uint32_t flip_pct;         /* a crash flips a bit on the disk */
    bool clock_steps;          /* wall clocks drift and step */
    uint32_t clock_rate_ppm;   /* each node's monotonic clock runs at a
                                  rate of its own, 1 +- up to this */
    bool membership;           /* the leader is asked to change the
                                  configuration (add a learner, promote
                                  one, remove a member, the leader
                                  included; hand leadership over); with 5
                                  or 7 nodes the last two start outside
                                  it, to be added */
    bool promote_cut;          /* with membership: a learner is cut off
                                  from every node just before the
                                  leader is asked to promote it (healed
                                  later), so the promotion commits while
                                  the new voter hears none of it */
    bool sick_disks;           /* a node's disk fails for a while: its
                                  host suspends the replica and, once the
                                  disk works again, reopens its stores and
                                  builds a new one (host_reopen) */
    bool reconfig;             /* the leader changes the configuration:
                                  demotes a voter (the leader itself,
                                  too: a handover) to learner, or
                                  promotes the learner back; at most one
                                  learner, odd clusters of 3 or more, so
                                  the quorum stays nodes / 2 + 1 */
    uint32_t fault_gap_ms;     /* mean time between injected faults */
    uint32_t fault_phase_ms;   /* faults only before this time */
} sim_profile;

const sim_profile *sim_profile_by_name(const char *name);
const sim_profile *sim_profile_for_seed(uint64_t seed);
uint32_t sim_profile_count(void);
const sim_profile *sim_profile_at(uint32_t i);

/* ---------------------------------------------------------------- events */

enum sim_ev_kind {
    SIM_EV_DELIVER = 1,    /* msg to node */
    SIM_EV_TIMER,          /* node tick; a = host epoch, b = timer gen */
    SIM_EV_FSYNC,          /* node's fdatasync done; a = epoch, b = kind
                              (enum host_sync_kind) */
    SIM_EV_BG,             /* node's periodic host work; a = epoch */
    SIM_EV_CLIENT,         /* client node, op slot a, gen b */
    SIM_EV_FAULT,          /* fault schedule tick */
    SIM_EV_RESTART,        /* node restarts; a = epoch it crashed in */
    SIM_EV_RESUME,         /* node pause ends; a = pause gen */
    SIM_EV_HEAL_LINKS,     /* link cuts end; a = partition gen */
    SIM_EV_DISK_OK,        /* node's disk works again; a = sick gen */
    SIM_EV_REOPEN,         /* a suspended host's probe: reopen if the disk
                              works; a = epoch */
};

typedef struct sim_event {
    uint64_t at_ms;
    uint64_t seq;          /* tie-break: insertion order */
    uint8_t kind;          /* enum sim_ev_kind */
    uint32_t node;
    uint64_t a, b;
    px_msg *msg;           /* SIM_EV_DELIVER: owned by the event */
} sim_event;

typedef struct sim_queue {
    sim_event *heap;
    uint32_t n, cap;
    uint64_t next_seq;
} sim_queue;

/* ----------------------------------------------------------------- host */

/* One accepted value as the node's disk holds it (check.c). */
typedef struct sim_dacc {
    uint64_t slot;
    px_ballot ballot;
    uint64_t digest;             /* sim_entry_digest */
} sim_dacc;

/* A bit flipped on a node's disk, judged at its next start. */
typedef struct sim_flip {
    int which;                   /* 0 acceptor log, 1 chain segment */
    char rel[128];
    uint64_t bit;                /* byte offset * 8 + bit */
    int flipped;                 /* the bit's value on disk after the flip */
    bool tried;                  /* a start failed after reading it */
} sim_flip;

#define SIM_MAX_FLIPS 4

struct sim_world;

typedef struct sim_host {
    struct sim_world *w;
    uint32_t id;                 /* node id = index + 1 = disk volume */
    bool alive;
    bool paused;
    uint64_t epoch;              /* bumped on crash: stale events ignored */
    host *host;                  /* the production host, NULL while down */
    px_replica *px;              /* host_replica(host) */
    px_options opt;
    uint64_t chain_sync_ms;      /* the host's chain fdatasync interval */

    /* what outlives a crash besides the disk */
    bool recovering;             /* acceptor state known incomplete */
    bool lost_state;             /* amnesia since the last start: the host
                                    is told to recover (what the start
                                    gate of node/integrity.c finds out
                                    from the peers, which is not
                                    simulated) */
    sim_flip flips[SIM_MAX_FLIPS];
    uint32_t n_flips;
    /* the acceptor state as the disk holds it (refreshed when an
     * fdatasync of the store returns; check.c) and the durable chain */
    px_ballot d_promise;
    sim_dacc *d_acc;
    uint32_t d_n, d_cap;
    uint64_t d_chain;
    /* the store's state when the acceptor fdatasync in flight began: the
     * disk holds it once that fdatasync completes */
    px_ballot c_promise;
    sim_dacc *c_acc;
    uint32_t c_n;
    bool c_ok;
    uint32_t sync_ticket[3];     /* fake-disk ticket of each kind in flight */
    /* last commit index heard from each peer: catch-up from the
     * chain starts after it (the transport's bookkeeping in a node) */
    uint64_t peer_commit[SIM_MAX_NODES + 1];
    /* the wall clock: simulated time + offset + drift */
    int64_t wall_offset_ms;
    int32_t drift_ppm;
    /* its monotonic clock: simulated time * (1 + rate_ppm / 10^6) (the
     * leases assume rates differ by less than 2x: docs/design.md) */
    int32_t rate_ppm;

    /* volatile */
    uint64_t timer_gen;
    uint64_t timer_at_ms;                    /* 0 = none scheduled */
    uint64_t same_ms_ticks;
    uint64_t last_tick_ms;
    uint32_t granted_reads;      /* read index granted, not yet served */
    uint64_t pause_gen;
    sim_event *deferred;         /* events that arrived while paused */
    uint32_t n_deferred, cap_deferred;
    bool sync_due[3];            /* an FSYNC event per kind is queued */
    /* sickdisk: the disk fails (every write and sync) until DISK_OK; a
     * host that met the failure stays up, suspended, and probes with
     * back-off until host_reopen succeeds (net/health.c in a node) */
    bool sick;
    uint64_t sick_gen;
    bool suspended;              /* host_failed: waiting for a reopen */
    uint64_t reopen_backoff_ms;
    bool in_step;                /* inside a host call (re-entry check) */
    bool step_failed;            /* the host's storage had failed when
                                    the host call began (e_output's
                                    check) */
} sim_host;

/* --------------------------------------------------------------- client */

enum sim_op_type { SIM_OP_PUT = 1, SIM_OP_APPEND, SIM_OP_DEL, SIM_OP_GET };

typedef struct sim_op {
    bool busy;
    uint8_t type;
    uint32_t key;
    uint64_t seq;                /* writes */
    char value[24];
    uint64_t invoke_ms;          /* first attempt */
    uint64_t attempt_ms;         /* current attempt */
    uint32_t node;               /* current attempt's replica */
    uint64_t node_epoch;         /* that replica's incarnation */
    uint64_t gen;                /* bumps per attempt: stale timeouts */
    uint64_t read_token;
    bool read_granted;           /* replica granted read_index */
    uint64_t read_index;
    uint32_t attempts;
    uint8_t *req;                /* encoded op bytes */
    uint32_t req_len;
} sim_op;

typedef struct sim_client {
    uint64_t id;
    uint64_t next_seq;
    uint32_t issued, quota;
    uint32_t window;
    sim_op ops[SIM_MAX_WINDOW];
    uint8_t op_of_seq[SIM_SEQ_HINTS]; /* seq % SIM_SEQ_HINTS -> op slot */
} sim_client;

/* A completed op, for the linearizability check. */
typedef struct sim_hist {
    uint8_t type;
    uint32_t key;
    uint64_t client_id, seq;
    char value[24];
    int32_t result;
    bool found;
    uint8_t *out;                /* GET value (malloc) */
    uint32_t out_len;
    uint64_t invoke_ms, return_ms;
} sim_hist;

/* -------------------------------------------------------------- checker */

typedef struct sim_slot {
    bool known;
    uint64_t digest;             /* of (kind, time_ms, data) */
    bool hashed;
    uint8_t hash[PX_HASH_BYTES];
    px_entry entry;              /* copy, for snapshot rebuilds */
    uint32_t first_node;
} sim_slot;

typedef struct sim_result {      /* first answer per (client, seq) */
    uint64_t client_id, seq;
    int32_t result;
    uint64_t slot;
    bool used;
} sim_result;

/* The configuration in force from a slot on (a CONFIG committed at
 * from_slot - 1; check.c). */
typedef struct sim_config_at {
    uint64_t from_slot;
    px_members members;
} sim_config_at;

typedef struct sim_check {
    sim_slot *slots;             /* index = slot */
    uint64_t n_slots;
    sim_config_at *configs;      /* in slot order; none: the initial one */
    uint32_t n_configs, cap_configs;
    sim_result *results;         /* open addressing */
    uint64_t n_results, cap_results;
} sim_check;

/* ---------------------------------------------------------------- trace */

enum sim_tr_kind {
    SIM_TR_MSG_OUT = 1, SIM_TR_MSG_IN, SIM_TR_DROP, SIM_TR_PERSIST,
    SIM_TR_COMMIT, SIM_TR_FAULT, SIM_TR_PROPOSE, SIM_TR_READ, SIM_TR_SNAPSHOT,
    SIM_TR_ROLE,
};

typedef struct sim_trace_rec {
    uint64_t at_ms;
    uint8_t kind;
    uint8_t msg_type;
    uint32_t peer;
    px_ballot ballot;
    uint64_t slot, commit, aux;
    uint32_t n;
    const char *note;            /* static string */
} sim_trace_rec;

typedef struct sim_trace {
    sim_trace_rec ring[SIM_MAX_NODES + 1][SIM_TRACE_RING];
    uint32_t next[SIM_MAX_NODES + 1];
    uint64_t count[SIM_MAX_NODES + 1];
} sim_trace;

/* ---------------------------------------------------------------- world */

typedef struct sim_config {
    uint64_t seed;
    uint32_t nodes;
    const sim_profile *profile;
    uint32_t clients;
    uint32_t ops_per_client;
    uint32_t window;
    uint32_t batch_max_requests;
    uint32_t window_slots;       /* px_options.window_slots */
    uint32_t retain_slots;       /* px_options.retain_slots (0 = default) */
    uint64_t acceptor_log_bytes; /* the store rolls past this (0: default) */
    uint64_t segment_bytes;      /* chain segment size (0: default) */
    uint32_t chain_sync_ms;      /* the chain's background fdatasync */
    bool sync_off_loop;          /* followers never fdatasync inline */
    bool trace_live;             /* print every trace record */
    bool bench;                  /* no checks that cost more than O(1) */
    uint64_t liveness_bound_ms;  /* after healing */
} sim_config;

enum sim_fault_kind {
    SIM_F_PARTITION, SIM_F_ONE_WAY, SIM_F_ISOLATE, SIM_F_CRASH, SIM_F_PAUSE,
    SIM_F_AMNESIA, SIM_F_FORGE, SIM_F_CLOCK, SIM_F_EIO, SIM_F_ENOSPC,
    SIM_F_SHORT, SIM_F_TORN, SIM_F_LOST, SIM_F_FLIP, SIM_F_SICK,
    SIM_F_RECONFIG, SIM_F_MEMBERS, SIM_F_TRANSFER, SIM_F_PROMOTE_CUT,
    SIM_F_KINDS
};

typedef struct sim_sync_ref {    /* an fdatasync a script completes */
    uint32_t node;
    int kind;
} sim_sync_ref;

typedef struct sim_stats {
    uint64_t steps, faults, requests, msgs, violations;
    uint64_t ops_done;
    uint64_t lease_grants, lease_reads;   /* follower leases, live hosts */
    uint64_t votes_sent, vote_commits;    /* leaders' own votes, live hosts */
    uint64_t by_kind[SIM_F_KINDS];   /* faults injected, by kind */
} sim_stats;

const char *sim_fault_name(int kind);

struct sim_world;
/* Each node's replica (role, leader, commit, configuration), on a
 * liveness failure. */
void sim_print_nodes(struct sim_world *w);

typedef struct sim_world {
    sim_config cfg;
    sim_rng rng;
    uint64_t now_ms;
    sim_queue q;
    sim_host hosts[SIM_MAX_NODES + 1];   /* [1..nodes] */
    px_members members;
    sim_client clients[SIM_MAX_CLIENTS];
    uint32_t n_clients;
    uint64_t next_read_token;
    uint32_t leader_hint;        /* bench: where clients send */
    uint32_t leader_hint_uses;

    /* network */
    bool cut[SIM_MAX_NODES + 1][SIM_MAX_NODES + 1]; /* from -> to blocked */
    uint64_t partition_gen;
    bool faults_on;              /* drop/dup active */
    bool healed;
    uint64_t heal_ms;

    sim_hist *hist;
    uint32_t n_hist, cap_hist;

    /* scripted runs (scenario.c): messages and fdatasyncs are kept for
     * the script instead of being delivered and completed */
    bool scripted;
    px_msg **captured;
    uint32_t n_captured, cap_captured;
    sim_sync_ref syncs[64];
    uint32_t n_syncs;
    uint32_t next_ticket;        /* fake-disk tickets of deferred syncs */

    sim_check check;
    bool lost_state_ever;        /* a node lost acceptor state: votes it
                                    cast before may be gone (check.c) */
    sim_trace *trace;
    sim_stats stats;
    char violation[512];         /* first violation */
    FILE *out;
} sim_world;

/* net.c */
int sim_queue_push(sim_queue *q, const sim_event *ev);
bool sim_queue_pop(sim_queue *q, sim_event *ev);
void sim_queue_free(sim_queue *q);
int sim_schedule(sim_world *w, uint64_t at_ms, uint8_t kind, uint32_t node,
                 uint64_t a, uint64_t b);
int sim_net_send(sim_world *w, const px_msg *m);
uint64_t sim_net_delay(sim_world *w);

/* host.c */
int sim_host_init(sim_world *w, sim_host *h, uint32_t id);
void sim_host_free(sim_host *h);
int sim_host_start(sim_world *w, sim_host *h);
void sim_host_crash(sim_world *w, sim_host *h);
/* Crash that also loses acceptor state: `rollback` restores the copy of
 * the disk taken at the last start, else the store is gone. */
void sim_host_lose_state(sim_world *w, sim_host *h, bool rollback);
/* The disk of the node fails (every write and sync, the host notices at
 * its next disk call and suspends its replica) and works again (a
 * suspended host reopens at its next probe). */
void sim_host_disk_fail(sim_world *w, sim_host *h);
void sim_host_disk_ok(sim_world *w, sim_host *h);
/* A suspended host's probe, now (at heal). */
void sim_host_try_reopen(sim_world *w, sim_host *h);
int sim_host_event(sim_world *w, sim_host *h, const sim_event *ev);
int sim_host_propose(sim_world *w, sim_host *h, const px_request *req);
/* A GET of `key` at h: a read point from the replica (on a follower
 * lease holder: at once, at every slot it accepted), or for odd tokens
 * the key read of a lease holder (consensus/reads.c invariant 9), as
 * the node does. */
int sim_host_read(sim_world *w, sim_host *h, uint64_t token, const char *key,
                  size_t key_len);
/* Ask `h` for a membership change or a leadership transfer (ev's type
 * PX_EV_CHANGE_MEMBERS or PX_EV_TRANSFER): the replica's answer (0 or
 * its refusal), -EHOSTDOWN when it is down or paused. */
int sim_host_change(sim_world *w, sim_host *h, px_event *ev);
/* The configuration in force at `slot`, and the one in force after the
 * last committed CONFIG (check.c). */
const px_members *sim_members_at(const sim_world *w, uint64_t slot);
const px_members *sim_members_now(const sim_world *w);
bool sim_is_member(const px_members *m, uint32_t id, bool voters_only);
/* Step `h` with PX_EV_CHANGE_MEMBERS for `m`: px_step's result. */
int sim_host_change_members(sim_world *w, sim_host *h, const px_members *m);
uint64_t sim_host_applied(const sim_host *h);
const kv *sim_host_state(const sim_host *h);
void sim_host_synced(void *arg, uint32_t vol, const char *rel);
void sim_host_clock_step(sim_world *w, sim_host *h);
bool sim_anyone_recovering(const sim_world *w);

/* client.c */
int sim_clients_init(sim_world *w);
void sim_clients_free(sim_world *w);
int sim_client_event(sim_world *w, const sim_event *ev);
void sim_client_on_write(sim_world *w, uint64_t client_id, uint64_t seq,
                         int32_t result, uint32_t node);
void sim_client_on_write_failed(sim_world *w, uint64_t client_id,
                                uint64_t seq, int status, uint32_t node);
void sim_client_on_read(sim_world *w, uint64_t token, int status,
                        const kv_value *v, uint32_t node);
bool sim_clients_done(const sim_world *w);
void sim_clients_print_pending(const sim_world *w);
const char *sim_key_name(uint32_t key, size_t *len);

/* check.c */
void sim_violation(sim_world *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
uint64_t sim_entry_digest(const px_entry *e);
void sim_check_committed(sim_world *w, uint32_t node, const px_entry *e);
void sim_check_applied(sim_world *w, uint32_t node, const px_entry *e,
                       const uint8_t hash[PX_HASH_BYTES]);
void sim_check_result(sim_world *w, uint32_t node, uint64_t client_id,
                      uint64_t seq, int32_t result, uint64_t slot);
void sim_check_final(sim_world *w);
void sim_check_free(sim_check *c);
void sim_check_vouch(sim_world *w, sim_host *h, const px_msg *m);
void sim_durable_refresh(sim_world *w, sim_host *h);
void sim_durable_capture(sim_world *w, sim_host *h);
void sim_durable_promote(sim_host *h);
void sim_durable_clear(sim_host *h);

/* trace.c */
void sim_trace_add(sim_world *w, uint32_t node, const sim_trace_rec *rec);
void sim_trace_msg(sim_world *w, uint32_t node, uint8_t kind,
                   const px_msg *m);
void sim_trace_note(sim_world *w, uint32_t node, uint8_t kind,
                    const char *note, uint64_t slot, uint32_t peer);
void sim_trace_dump(const sim_world *w, FILE *f);

/* sim.c */
int sim_run(const sim_config *cfg, sim_stats *stats, FILE *out);
void sim_default_config(sim_config *cfg, uint64_t seed, uint32_t nodes,
                        const sim_profile *p);

void sim_add(sim_stats *total, const sim_stats *s);
void sim_fault_summary(const sim_stats *st, char *out, size_t len);

/* scenario.c */
int sim_run_scenarios(FILE *out, uint32_t *passed, uint32_t *failed);
int sim_world_init(sim_world *w, const sim_config *cfg, FILE *out);
void sim_world_free(sim_world *w);

/* regressions.c */
int sim_run_regressions(FILE *out, sim_stats *total, uint32_t *passed,
                        uint32_t *failed);

/* bench.c */
int sim_bench(FILE *out);

#endif /* PAXOSFS_SIM_H */
