/*
 * px.h - the paxosfs Multi-Paxos replica, as a pure state machine.
 *
 * This header is the whole public surface of consensus/.  The replica does
 * no I/O: no sockets, files, clocks, threads, global state or printing.  It
 * is driven by events that carry the current time and answers each event
 * with a set of actions (px_output) that the host carries out in a fixed
 * order:
 *
 *   1. persist   - make out->promise / out->accepts durable (fdatasync);
 *   2. send      - only then hand out->msgs to the network;
 *   3. report    - step PX_EV_PERSISTED with out->persist_id once step 1 is
 *                  durable (the replica counts its own acceptance only then);
 *   4. apply     - apply out->committed, in slot order, to the state machine;
 *   5. serve     - answer the reads in out->reads once the state machine has
 *                  applied up to their index;
 *   6. re-arm    - call PX_EV_TICK no later than out->next_tick_ms.
 *
 * A host may merge several outputs into one group commit: it persists the
 * union, then sends the union of their messages, then reports each
 * persist_id.  Messages of an output must never leave before that output's
 * persist step is durable (DESIGN.md invariant 2), and persist steps become
 * durable in the order they were issued (a host appending to one file and
 * syncing it gets this for free): a message may vouch for every accept
 * issued up to its own output.
 *
 * Ownership: everything an event points to belongs to the caller and is
 * copied by px_step if needed.  Everything px_output points to belongs to
 * the replica and stays valid until the next px_step or px_destroy call on
 * the same replica.  px_msg_copy makes a self-contained copy of a message
 * (one allocation, free with free()) for hosts that queue messages.
 *
 * Errors: functions return 0 on success or a negative errno
 * (-ENOMEM, -EINVAL, -ENOSPC, ...).  A malformed or stale message is not an
 * error: it is ignored and counted in px_stats.
 *
 * Time is in milliseconds of a monotonic clock chosen by the host; the
 * replica never reads a clock.  Randomness (election timeouts) comes from
 * px_options.seed only, so one seed replays one run exactly.
 */
#ifndef PAXOSFS_PX_H
#define PAXOSFS_PX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../base/entry.h"
#include "../base/types.h"

/* ---------------------------------------------------------------- ballots */

int px_ballot_cmp(px_ballot a, px_ballot b); /* <0, 0, >0 */

#define PX_LEASE_AUTO UINT64_MAX
#define PX_STALL_AUTO UINT64_MAX

typedef struct px_options {
    uint32_t self_id;                 /* non-zero, unique in the cluster */
    px_members members;               /* configuration at creation */
    uint64_t heartbeat_interval_ms;   /* leader -> followers */
    uint64_t election_timeout_min_ms; /* randomised in [min, max) */
    uint64_t election_timeout_max_ms;
    uint64_t lease_ms;                /* read lease (reads.c): a leader
                                         whose heartbeat round sent at t a
                                         quorum echoed serves reads without
                                         a round until t + lease_ms; 0: no
                                         lease.  Must stay below
                                         election_timeout_min_ms by the
                                         clock-rate error allowed
                                         (docs/design.md "Read lease");
                                         PX_LEASE_AUTO (the default):
                                         half of it */
    bool follower_leases;             /* a follower that serves reads holds
                                         a lease from the leader and reads
                                         from its own state; the leader
                                         commits only what every lease
                                         holder accepted (reads.c
                                         invariant 8); needs lease_ms */
    uint64_t stall_ms;                /* a step later than the tick this
                                         replica asked for by more than
                                         this: the host was stalled (not
                                         scheduled, paused), and the time
                                         lost is not counted against the
                                         leader or the quorum (replica.c
                                         invariant 5); 0:
                                         never; PX_STALL_AUTO (the
                                         default): half of
                                         election_timeout_min_ms */
    uint32_t batch_max_requests;      /* client requests per slot, >= 1 */
    uint32_t batch_max_bytes;         /* encoded batch size bound */
    uint32_t window_slots;            /* slots in flight (pipelining), >= 1 */
    uint64_t retry_interval_ms;       /* re-send of unanswered accepts/forwards */
    uint64_t commit_notice_ms;        /* a commit index no ACCEPT carried by
                                         then goes out in COMMIT messages */
    bool thrifty;                     /* phase 2 at once only to the voters a
                                         quorum needs (and to forwarders);
                                         the others within
                                         heartbeat_interval_ms */
    uint32_t retain_slots;            /* committed slots kept for catch-up */
    uint64_t retain_bytes;            /* ... and at most this many bytes of
                                         them (the newest committed slot is
                                         kept whatever its size); older
                                         slots are served from the host's
                                         chain (snapshot_to) */
    uint32_t max_pending_requests;    /* requests queued at this replica */
    uint64_t seed;                    /* all randomness comes from here */
} px_options;

/* Fill *opt with working defaults for `self_id` (members left empty). */
void px_options_default(px_options *opt, uint32_t self_id);

/* --------------------------------------------------------------- messages */

enum px_msg_type {
    PX_MSG_PREPARE = 1,   /* phase 1a: ballot, slot = first unchosen slot */
    PX_MSG_PROMISE,       /* phase 1b: entries = accepted values >= slot */
    PX_MSG_ACCEPT,        /* phase 2a: entries to accept; commit index */
    PX_MSG_ACCEPTED,      /* phase 2b: slot = highest slot accepted in
                             ballot, aux = acceptor's first gap */
    PX_MSG_REJECT,        /* NACK: aux_ballot = the higher promised ballot */
    PX_MSG_HEARTBEAT,     /* leader alive; commit index; aux = read round */
    PX_MSG_HEARTBEAT_ACK, /* aux = read round echoed; slot = applied/commit */
    PX_MSG_FORWARD,       /* requests for the leader */
    PX_MSG_CATCHUP_REQ,   /* slot = first slot wanted */
    PX_MSG_CATCHUP,       /* committed entries from slot on */
    PX_MSG_SNAPSHOT_NEEDED, /* the sender no longer holds `slot`: install a
                               snapshot (host transfers it out of band) */
    PX_MSG_COMMIT,        /* leader's commit index, unanswered, when no
                             ACCEPT or HEARTBEAT carried it: at once to a
                             follower whose forwarded requests it covers,
                             to the others after commit_notice_ms */
    PX_MSG_TIMEOUT_NOW,   /* leader -> a voter: I stepped down, campaign
                             now (leadership transfer, members.c) */
    PX_MSG_TYPE_COUNT
};

typedef struct px_msg {
    uint8_t type;            /* enum px_msg_type */
    uint32_t from;           /* sender node id */
    uint32_t to;             /* receiver node id */
    px_ballot ballot;        /* sender's ballot for this exchange */
    uint64_t slot;           /* meaning per type (see above) */
    uint64_t commit;         /* sender's commit index */
    uint64_t aux;            /* meaning per type */
    px_ballot aux_ballot;    /* meaning per type */
    uint64_t chain_index;    /* sender's chain head (DESIGN.md invariant 3) */
    uint8_t chain_hash[PX_HASH_BYTES];
    uint64_t lease_round;    /* follower lease (reads.c invariant 8): in an
                                ACCEPTED or HEARTBEAT_ACK the sender's
                                round asking for one (0: none wanted); in
                                an ACCEPT, HEARTBEAT or COMMIT the round
                                the grant answers */
    uint32_t lease_ms;       /* the grant: that round's send time + this */
    uint32_t n_entries;
    const px_entry *entries;
    uint32_t n_requests;
    const px_request *requests;
} px_msg;

/* Self-contained deep copy in one allocation (release with free()). */
px_msg *px_msg_copy(const px_msg *m);

/* ----------------------------------------------------------------- events */

enum px_event_type {
    PX_EV_TICK = 1,           /* time advanced; nothing else */
    PX_EV_RECEIVE,            /* .msg arrived from a peer */
    PX_EV_PROPOSE,            /* .propose: client requests submitted here */
    PX_EV_PERSISTED,          /* .persist_id: that output is durable */
    PX_EV_SNAPSHOT_INSTALLED, /* .snapshot: state machine now at index */
    PX_EV_READ_INDEX,         /* .read_token: ask for a linearizable read */
    PX_EV_READ_BATCH,         /* .reads: as many READ_INDEX in one step (a
                                 follower asks the leader once for all) */
    PX_EV_CHECKPOINT,         /* .checkpoint: the host took a snapshot at
                                 index with this state digest; a leader
                                 proposes a PX_ENTRY_CHECKPOINT entry with
                                 them (in its next free window slot; a
                                 newer one replaces one not yet proposed),
                                 any other replica ignores the event */
    PX_EV_CHANGE_MEMBERS,     /* .change: propose the next configuration
                                 (leader only; see px_step) */
    PX_EV_TRANSFER,           /* .transfer_to: hand leadership to that voter
                                 (0: the most caught-up one); leader only */
};

typedef struct px_event {
    uint8_t type;             /* enum px_event_type */
    uint64_t now_ms;          /* the host's monotonic time, never decreasing:
                                 every timer runs on it */
    uint64_t wall_ms;         /* wall-clock time, stamped into the entries a
                                 leader proposes (their commit time); 0:
                                 use now_ms (hosts without a wall clock) */
    union {
        const px_msg *msg;
        struct {
            const px_request *requests;
            uint32_t n_requests;
        } propose;
        uint64_t persist_id;
        struct {
            uint64_t index;   /* last slot contained in the snapshot */
            px_members members;
            uint8_t hash[PX_HASH_BYTES]; /* chain hash of block index: the
                                            host's chain head from now on
                                            (all zero: not given) */
        } snapshot;
        px_checkpoint checkpoint;
        uint64_t read_token;  /* host's tag, echoed in px_read_ready */
        struct {
            const uint64_t *tokens;
            uint32_t n;
        } reads;
        struct {
            px_members members;     /* the configuration wanted */
            const uint8_t *context; /* carried in the CONFIG entry for the
                                       host (base/entry.h) */
            uint32_t context_len;
        } change;
        uint32_t transfer_to;
    } u;
} px_event;

/* ---------------------------------------------------------------- outputs */

/* A read that may now be served: apply up to `index`, then read. */
typedef struct px_read_ready {
    uint64_t read_token;
    uint64_t index;
    int status;               /* 0, or -EAGAIN: no leader, retry later */
} px_read_ready;

/* A request this replica gave up on (queue full, no leader for too long):
 * the host answers its client with `status` (negative errno). */
typedef struct px_request_failed {
    uint64_t client_id;
    uint64_t seq;
    int status;
} px_request_failed;

typedef struct px_output {
    /* 1. persist before any message below leaves */
    bool persist_promise;          /* make `promise` durable */
    px_ballot promise;
    uint32_t n_accepts;            /* accepted values to make durable */
    const px_entry *accepts;
    uint64_t persist_id;           /* non-zero: report PX_EV_PERSISTED */

    /* 2. messages, after step 1 is durable */
    uint32_t n_msgs;
    const px_msg *msgs;

    /* 4. newly committed, in slot order, contiguous */
    uint32_t n_committed;
    const px_entry *committed;

    /* 5. reads */
    uint32_t n_reads;
    const px_read_ready *reads;

    /* requests refused at this replica */
    uint32_t n_failed;
    const px_request_failed *failed;

    /* a peer asked for slots from `catchup_slot` on that this replica no
     * longer retains but the host's chain still holds (above the chain
     * base, px_set_chain_base): the host streams it chain blocks from
     * there in CATCHUP messages; 0 = none */
    uint32_t catchup_to;
    uint64_t catchup_slot;

    /* a peer asked for slots at or below the host's chain base (they
     * were compacted away, px_set_chain_base): it was sent
     * SNAPSHOT_NEEDED and the host sends it a snapshot; 0 = none */
    uint32_t snapshot_to;

    /* this replica needs a snapshot from `snapshot_from` (0 = none): the
     * host fetches one, installs it, and steps PX_EV_SNAPSHOT_INSTALLED
     * (at most once per retry_interval_ms while it lasts) */
    uint32_t snapshot_from;

    /* the recovery of an incomplete acceptor state (px_begin_recovery)
     * finished in this step: the replica votes again; the host may record
     * that durably (until it does, a restart recovers once more) */
    bool recovered;

    /* 6. timer */
    uint64_t next_tick_ms;
} px_output;

/* ----------------------------------------------------------------- replica */

typedef struct px_replica px_replica;

/* What the host recovered from stable storage on restart (zeros for a new
 * replica).  The replica continues above every ballot it ever promised, so
 * a restarted node never reuses a ballot. */
typedef struct px_restore {
    px_ballot promise;          /* highest ballot promised */
    uint64_t applied_index;     /* last slot applied by the state machine
                                   (chain head, or snapshot index) */
    px_members members;         /* configuration as of applied_index; empty
                                   = px_options.members */
    uint32_t n_accepts;         /* accepted values above applied_index */
    const px_entry *accepts;
    bool recovering;            /* the acceptor state above may be
                                   incomplete (lost, damaged, rolled back):
                                   recover before voting (px_begin_recovery) */
} px_restore;

/* Create a replica.  `restore` may be NULL for a fresh one.  On success
 * *out owns copies of everything it needs. */
int px_create(const px_options *opt, const px_restore *restore,
              px_replica **out);
void px_destroy(px_replica *r);

/* Feed one event; fills *out (see the ordering at the top).  Returns 0 or a
 * negative errno:
 *   -EINVAL  a bad event; nothing changed, *out is empty.
 *   -ENOMEM  an allocation failed part way through the step.  The replica
 *            may have changed and *out is incomplete (it may, for example,
 *            vouch for an accept whose record it could not add), so the
 *            host must carry out nothing of *out and must not step this
 *            replica again: px_destroy it and, to go on, px_create a new
 *            one from the durable state, as after a crash.  Safety rests
 *            on the durable state alone, so this is safe; outputs of
 *            earlier steps still in the host's pipeline stay valid.
 *            (Tested by failing allocations at random: test_consensus_
 *            replica.c test_failing_allocations.)
 * PX_EV_CHANGE_MEMBERS and PX_EV_TRANSFER are refused, with nothing
 * changed and *out empty, by:
 *   -EAGAIN  not the leader (ask the leader: px_status.leader_id), or the
 *            leader has not yet committed a slot of its own ballot, or a
 *            transfer is under way;
 *   -EBUSY   a configuration change is not committed yet (one at a time);
 *   -EINVAL  the configuration is invalid, changes more than one voter,
 *            or is the one in force; the transfer target is not a voter.
 * 0: the CONFIG entry is proposed (px_status.config_slot names its slot;
 * it is in force once committed) or the transfer has begun (it ends with
 * a TIMEOUT_NOW to the target and this leader stepping down, or is given
 * up after election_timeout_min_ms: px_stats.transfers_given_up). */
int px_step(px_replica *r, const px_event *ev, px_output *out);

/* The host found out that this replica's acceptor state may be
 * incomplete: promises or accepted values lost (a damaged, emptied or
 * deleted acceptor store, a backing directory restored from an older
 * copy).  From now on the replica casts no vote (no PROMISE, ACCEPTED,
 * REJECT or HEARTBEAT_ACK leaves it), never campaigns and never leads,
 * until it has recovered (consensus/recovery.c):
 *   1. it sends a recovery PREPARE (aux = 2) with a ballot above every
 *      round it knows to every other voter, which each answers, whatever
 *      leader it follows, by promising that ballot (a strictly higher one
 *      than its own promise, else it rejects and the round is retried
 *      higher) and reporting its accepted values and commit index;
 *   2. once every other voter has promised, it raises its own promise to
 *      that ballot and notes the highest slot any voter reported;
 *   3. it votes again once its commit index reaches that slot, which it
 *      learns from the leader as any follower does.
 * Already recovering: no-op.  px_status.recovering shows the state and
 * px_output.recovered the end.  No I/O; the next step sends. */
void px_begin_recovery(px_replica *r);
bool px_recovering(const px_replica *r);

/* The host can no longer persist: a write or fdatasync of its acceptor
 * store or chain failed (EIO, ENOSPC), or it has no descriptor left
 * (EMFILE).  Nothing it would persist from now on could be made durable,
 * so from its next px_step on, and for the rest of its life, the replica:
 *   - neither leads, campaigns nor votes: a leader or candidate steps
 *     down (its heartbeats stop, so the others elect a leader among
 *     themselves) and it follows no leader (leader_id 0);
 *   - ignores every message it receives (px_stats.msgs_suspended);
 *   - puts out no message, no persist step and no committed entry;
 *   - answers every request and read submitted here with -EIO: those
 *     queued when px_suspend was called in the output of that next step,
 *     later ones in the output of their own PX_EV_PROPOSE or
 *     PX_EV_READ_INDEX.  Requests it had already forwarded to a leader,
 *     or proposed as leader, may still commit (as after a timeout).
 * Once persisting works again the host builds a new replica with
 * px_create from what its storage holds (never resumes this one: its
 * memory may hold promises and accepted values that never reached the
 * disk).  Already suspended: no-op.  No I/O. */
void px_suspend(px_replica *r);
bool px_suspended(const px_replica *r);

/* Tell the replica the chain head the host computed, so heartbeats and
 * acks carry it to peers (DESIGN.md invariant 3).  No I/O. */
void px_set_chain_head(px_replica *r, uint64_t index,
                       const uint8_t hash[PX_HASH_BYTES]);

/* Tell the replica that the host's chain no longer holds the blocks up to
 * `base` (compacted after a snapshot, or a snapshot was installed): a
 * peer asking for one of them is sent SNAPSHOT_NEEDED (px_output
 * snapshot_to) instead of chain blocks (catchup_to).  The base only
 * grows; a snapshot install raises it to its index.  0 (the start): the
 * chain holds every block.  No I/O. */
void px_set_chain_base(px_replica *r, uint64_t base);
uint64_t px_chain_base(const px_replica *r);

enum px_role { PX_FOLLOWER = 0, PX_CANDIDATE = 1, PX_LEADER = 2, PX_LEARNER = 3 };

typedef struct px_status {
    uint32_t self_id;
    uint8_t role;              /* enum px_role */
    uint32_t leader_id;        /* 0 = unknown */
    px_ballot ballot;          /* current (leader's) ballot */
    px_ballot promise;         /* highest promised */
    uint64_t commit_index;
    uint64_t applied_index;    /* as handed out in px_output.committed */
    uint64_t first_retained;   /* lowest slot still kept for catch-up */
    px_members members;
    uint32_t pending_requests; /* queued or forwarded, not yet committed */
    bool read_lease;           /* leader holding its read lease now */
    uint64_t lease_ms_left;    /* ... for this much longer */
    bool follower_lease;       /* follower holding a follower lease now */
    uint64_t follower_lease_ms_left;
    uint32_t leases_granted;   /* leader: peers whose lease may hold now */
    uint32_t slots_in_flight;
    uint32_t n_peers;          /* per-peer view, leader only */
    struct {
        uint32_t id;
        uint64_t match_index;   /* highest slot known accepted */
        uint64_t last_contact_ms;
    } peers[PX_MAX_MEMBERS];
    /* recovery of an incomplete acceptor state (px_begin_recovery) */
    bool recovering;
    px_ballot recovery_ballot;    /* ballot of the recovery round */
    uint32_t recovery_promised;   /* other voters that promised it */
    uint32_t recovery_needed;     /* other voters in all */
    uint64_t recovery_slot;       /* votes again once commit reaches it;
                                     0 until every voter promised */
    bool suspended;               /* px_suspend: neither leads nor votes */
    uint64_t config_slot;         /* leader: slot of its CONFIG entry not yet
                                     committed (no new batch meanwhile), 0:
                                     none */
    uint32_t transfer_to;         /* leader: handing over to this voter */
} px_status;

void px_get_status(const px_replica *r, px_status *st);

/* The role alone (enum px_role): cheap enough for every loop turn. */
uint8_t px_role(const px_replica *r);

/* When this replica last knew a leader to be alive: the current time
 * (of its last event) while it leads, the time of the last message from
 * the leader it follows, 0 when it knows of no leader.  Cheap. */
uint64_t px_leader_contact_ms(const px_replica *r);

/* A read point without a step: true, with the read index in *index,
 * when a READ_INDEX submitted at `now_ms` would be released at once
 * (reads.c: this replica leads, its read lease holds at now_ms, its
 * commit index passed its fence and no read waits for a round); false
 * otherwise (submit the read as an event), also when now_ms is before
 * the replica's last event.  Changes nothing; cheap. */
bool px_read_now(const px_replica *r, uint64_t now_ms, uint64_t *index);

/* The host served a read with px_read_now on a replica that does not
 * lead (its follower lease): keeps asking the leader for the lease
 * (reads.c invariant 8).  Changes nothing else; cheap. */
void px_read_local(px_replica *r, uint64_t now_ms);

/* px_read_now for a read that depends only on some entries, on a
 * replica holding a follower lease (reads.c invariant 9): `depends` is
 * asked of each batch entry this replica accepted in the lease's ballot
 * above its commit index (newest first, until it says yes); the index
 * skips what it says the read does not depend on.  False without the
 * lease.  Changes nothing. */
typedef bool (*px_depends_fn)(void *arg, const uint8_t *data, uint32_t len);
bool px_read_now_for(const px_replica *r, uint64_t now_ms,
                     px_depends_fn depends, void *arg, uint64_t *index);

/* A replica that does not lead has asked its leader for a read round
 * that the leader has not answered yet (reads.c invariant 7): a read
 * submitted now waits for the next round, which the next step with
 * reads sends; with none out, that step sends it at once.  Cheap. */
bool px_read_round_out(const px_replica *r);

/* Bytes of committed values retained for catch-up (retain_bytes bounds
 * them). */
uint64_t px_retained_bytes(const px_replica *r);

/* Counters: dropped and stale messages, elections, ... */
typedef struct px_stats {
    uint64_t msgs_received;
    uint64_t msgs_ignored;       /* stale ballot, unknown sender, malformed */
    uint64_t elections_started;
    uint64_t leader_changes;
    uint64_t slots_committed;
    uint64_t requests_committed;
    uint64_t requests_forwarded;
    uint64_t requests_failed;
    uint64_t ballots_refused;    /* ballot beyond PX_ROUND_WINDOW above
                                    every round seen: dropped (msg.c) */
    uint64_t rounds_exhausted;   /* elections not started: no round left */
    uint64_t msgs_suspended;     /* ignored while suspended (px_suspend) */
    uint64_t checkpoints_proposed; /* PX_EV_CHECKPOINT made an entry */
    uint64_t snapshots_installed;  /* PX_EV_SNAPSHOT_INSTALLED moved commit */
    uint64_t config_changes;     /* CONFIG entries committed */
    uint64_t transfers_started;  /* TIMEOUT_NOW sent (this node handed over) */
    uint64_t transfers_given_up; /* target not caught up in time */
    uint64_t transfer_elections; /* campaigns started by a TIMEOUT_NOW */
    uint64_t lease_grants;       /* follower leases granted (reads.c inv. 8) */
    uint64_t lease_reads;        /* reads served under a follower lease */
    uint64_t votes_sent;         /* leader's own votes (leader.c inv. 9) */
    uint64_t vote_commits;       /* slots committed on them (learner.c 6) */
    uint64_t stalls;             /* steps later than stall_ms (replica.c
                                    invariant 5) */
    uint64_t stalled_ms;         /* ... the time lost in them, not counted
                                    against the leader or the quorum */
} px_stats;

void px_get_stats(const px_replica *r, px_stats *st);

#endif /* PAXOSFS_PX_H */
