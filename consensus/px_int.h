/*
 * px_int.h - private layout of the paxosfs replica, shared by the files of
 * consensus/ and by nothing else.  px.h is the public surface.
 *
 * Files and what each owns:
 *   replica.c  - px_create/px_step dispatch, output buffers, timers, status
 *   log.c      - the slot ring (accepted and retained committed values) and
 *                the persistence records (persist_id bookkeeping)
 *   acceptor.c - promises, accepts, PREPARE/ACCEPT/HEARTBEAT handling
 *   election.c - pre-vote probe, phase 1, recovery of accepted values
 *   leader.c   - phase 2: batching, pipelining window, heartbeats, commit
 *   reads.c    - linearizable read index
 *   learner.c  - commit rule, apply order, catch-up, snapshots
 *   forward.c  - the request queue: forwarding, retries, dedupe
 *   recovery.c - recovery of an incomplete acceptor state before voting
 *   suspend.c  - the suspended mode of a replica whose host cannot persist
 *   members.c  - configuration encoding and quorum helpers
 *   batch.c    - batch encoding
 *   sessions.c - exactly-once session table
 *   msg.c      - ballot order, message copy and validation
 *
 * Message semantics that px.h leaves open (the wire contract of paxosfs):
 *   PREPARE   aux = 1: pre-vote probe.  No state changes at the acceptor;
 *             granted with PROMISE aux = 1, no entries.  aux = 0: phase 1a.
 *   PROMISE   A probe grant: aux = 1, aux_ballot = {0, 0}, no entries.
 *             A real promise comes in one or more pieces.  Piece: slot =
 *             first slot covered, aux = last slot covered (UINT64_MAX for
 *             the final piece), aux_ballot = {1, 0} marks a real promise,
 *             commit = acceptor's commit index: entries with slot <= commit
 *             are chosen values, the others accepted values.  An acceptor
 *             sends every held slot >= the prepared slot; pieces hold at
 *             most PX_PIECE_MAX_ENTRIES / PX_PIECE_MAX_BYTES, and a lost
 *             piece is recovered by the candidate re-sending PREPARE.
 *   ACCEPTED  slot = highest slot of the ACCEPT held in that ballot,
 *             aux = first slot the acceptor cannot yet vouch for: every
 *             slot below aux is committed at the acceptor or accepted in
 *             `ballot` and durable (or persisted by the same output).
 *   HEARTBEAT_ACK slot = acceptor's commit index, aux = read round echoed.
 *   FORWARD   n_requests > 0: client requests for the leader.
 *             n_requests = 0, aux_ballot null: read-index request, aux =
 *             the requester's read token.  n_requests = 0, aux_ballot =
 *             leader ballot: read-index reply, aux = token, slot = index.
 *   CATCHUP   slot = first slot carried; commit = sender's commit; every
 *             entry is a chosen value.
 *   PREPARE   aux = 2: recovery prepare (recovery.c) from a voter whose
 *             acceptor state may be incomplete; every voter answers it
 *             (stickiness does not apply) with a real PROMISE if the
 *             ballot is strictly above its promise, else a REJECT.
 *   SNAPSHOT_NEEDED slot = the first slot the sender can still serve
 *             (its chain base + 1).
 *   TIMEOUT_NOW ballot = the sending leader's ballot, which it has just
 *             left: the receiver, following that ballot, campaigns at once
 *             with PREPARE aux = 3 and aux_ballot = that ballot; a voter
 *             that follows the same ballot answers it despite stickiness
 *             (acceptor.c invariant 4).
 */
#ifndef PAXOSFS_PX_INT_H
#define PAXOSFS_PX_INT_H

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../base/check.h"
#include "px.h"

/* An invariant the code relies on, checked in every build (base/check.h;
 * the replica does no I/O, so no message: the core dump has the place). */
#define PX_ASSERT(cond) CHECK(cond)

#define PX_MSG_MAX_ENTRIES 4096u      /* entries accepted in one message */
#define PX_MSG_MAX_REQUESTS 65536u    /* requests accepted in one message */
#define PX_PIECE_MAX_ENTRIES 64u      /* entries per PROMISE/CATCHUP/resend */
#define PX_PIECE_MAX_BYTES LIMIT_PIECE /* bytes per piece (>= 1 entry) */
#define PX_RESEND_BACKOFF_MAX 32u     /* re-sends wait at most this many
                                         retry intervals */
#define PX_PERSIST_RECORDS 1024u      /* outstanding persist_ids */
#define PX_READS_MAX 4096u            /* pending reads per list */
#define PX_FL_WANT_MS 1000u          /* reads.c invariant 8: a follower
                                         asks for a lease this long after
                                         it served a read */
#define PX_FL_GRANTS (2u * PX_MAX_MEMBERS) /* follower lease grants kept */
#define PX_LEASE_ROUNDS 64u           /* heartbeat rounds whose send time
                                         is kept for the read lease */
#define PX_ROUND_MAX (UINT64_C(1) << 63) /* rounds at or above are malformed */
/* How far above the highest round it has seen a replica lets a message's
 * ballot be (msg.c invariant 3): legitimate rounds climb by one per
 * election, so a ballot further up can only be forged, and taking it
 * would let one message use up the round space. */
#define PX_ROUND_WINDOW (UINT64_C(1) << 20)
#define PX_KEEP_BUFFER_BYTES (64u << 10) /* cell buffers kept for reuse */
#define PX_PREPARE_PROBE 1u           /* PREPARE aux: pre-vote probe */
#define PX_PREPARE_RECOVERY 2u        /* PREPARE aux: recovery round */
#define PX_PREPARE_TRANSFER 3u        /* PREPARE aux: phase 1a of a voter the
                                         leader handed over to (TIMEOUT_NOW);
                                         aux_ballot = that leader's ballot */

/* ----------------------------------------------------------- slot ring */

/* One slot's value as this replica holds it. */
typedef struct px_cell {
    uint64_t slot;        /* 0 = empty cell */
    px_ballot ballot;     /* accepted in (or, once committed, as learned) */
    uint64_t time_ms;
    uint64_t persist_id;  /* output that persists this acceptance */
    uint32_t len;
    uint32_t cap;         /* bytes allocated at data */
    uint8_t *data;
    uint8_t kind;
    bool durable;         /* own acceptance is on stable storage */
    bool chosen;          /* election store only: value known chosen */
} px_cell;

typedef struct px_persist_rec {
    uint64_t id;
    uint64_t lo, hi;       /* slots persisted (lo > hi: none) */
    bool has_promise;
    px_ballot promise;
} px_persist_rec;

/* ----------------------------------------------------------- leader view */

typedef struct px_peer {
    uint32_t id;
    bool voter;
    uint64_t match;            /* every slot <= match vouched for */
    uint64_t commit;           /* peer's commit index as last reported */
    uint64_t last_contact_ms;  /* any message in our ballot */
    uint64_t last_progress_ms; /* match last moved (or resend) */
    uint64_t resend_wait_ms;   /* next re-send after this long without
                                  progress: retry_interval_ms, doubled by
                                  every re-send that brought none */
    uint64_t acked_round;      /* read round echoed */
    uint64_t notify_slot;      /* highest slot holding a request it forwarded */
    uint64_t commit_sent;      /* highest commit index we sent it */
    uint64_t sent;             /* highest slot sent to it in an ACCEPT */
    bool eager;                /* gets every batch at once (thrifty) */
    uint64_t fl_round;         /* follower lease: newest round it asked in */
    uint64_t fl_asked_ms;      /* ... and when that ask arrived */
    bool fl_answer;            /* it asked outright: grant at once */
    uint64_t vote_sent;        /* our own vote sent it (leader.c inv. 9) */
    /* election */
    bool granted;              /* probe granted */
    uint64_t covered;          /* promise pieces cover [start, covered) */
    bool promised;             /* promise complete */
    /* recovery round (recovery.c) */
    uint64_t rec_covered;      /* its promise pieces cover [start, here) */
    bool rec_promised;         /* its promise is complete */
} px_peer;

/* ------------------------------------------------------ request queue */

enum px_qlist { PX_Q_PENDING = 0, PX_Q_SENT = 1, PX_Q_PROPOSED = 2,
                PX_Q_LISTS = 3, PX_Q_FREE = 255 };

typedef struct px_req {
    uint64_t client_id, seq, ack_seq;
    uint64_t sent_ms;
    uint32_t len;
    uint8_t *op;
    int32_t prev, next;
    uint32_t origin;           /* 0 = submitted here, else forwarding node */
    uint8_t list;
} px_req;

typedef struct px_queue {
    px_req *reqs;
    uint32_t cap, count;
    int32_t free_head;
    int32_t head[PX_Q_LISTS], tail[PX_Q_LISTS];
    uint32_t n[PX_Q_LISTS];
    int32_t *hash;             /* open addressing, -1 empty */
    uint32_t hash_mask;
} px_queue;

/* ---------------------------------------------------------------- reads */

typedef struct px_read {
    uint64_t token;
    uint64_t round;            /* leader: heartbeat round that confirms;
                                  follower: its first read round (reads.c
                                  invariant 7) */
    uint64_t deadline_ms;
    uint64_t sent_ms;          /* follower: last request to the leader */
    uint32_t origin;           /* 0 = local, else requesting node */
    bool sent;
} px_read;

typedef struct px_readq {
    px_read *items;
    uint32_t head, count;      /* ring of PX_READS_MAX */
} px_readq;

/* --------------------------------------------------------------- output */

typedef struct px_outbuf {
    px_msg *msgs;
    uint32_t *ent_off, *req_off;  /* per message offsets into pools */
    uint32_t n_msgs, cap_msgs;
    px_entry *ents;
    uint32_t n_ents, cap_ents;
    px_request *reqs;
    uint32_t n_reqs, cap_reqs;
    px_entry *accepts;
    uint32_t n_accepts, cap_accepts;
    px_entry *committed;
    uint32_t n_committed, cap_committed;
    px_read_ready *reads;
    uint32_t n_reads, cap_reads;
    px_request_failed *failed;
    uint32_t n_failed, cap_failed;
    bool persist_promise;
    px_ballot promise;
    uint32_t snapshot_to, snapshot_from, catchup_to;
    uint64_t catchup_slot;
    bool recovered;
    int error;                    /* first -ENOMEM while building */
} px_outbuf;

/* ---------------------------------------------------------------- election */

enum px_phase { PX_PHASE_NONE = 0, PX_PHASE_PROBE = 1, PX_PHASE_PREPARE = 2 };

typedef struct px_election {
    uint8_t phase;
    px_ballot ballot;          /* ballot probed / prepared */
    uint64_t start_slot;       /* PREPARE slot */
    uint64_t max_commit;       /* highest commit reported in promises */
    uint32_t max_commit_from;
    uint64_t max_slot;         /* highest slot reported */
    uint64_t resend_ms;
    uint64_t resend_wait_ms;   /* doubles with each PREPARE re-send */
    bool overflow;             /* a reported slot did not fit: abort */
    bool transfer;             /* started by TIMEOUT_NOW: PREPARE aux = 3 */
    px_ballot transfer_from;   /* ... the ballot of the leader that left */
    px_cell *rec;              /* recovered values, slot - start_slot */
    uint64_t rec_cap;
} px_election;

/* ---------------------------------------------------------------- replica */

struct px_replica {
    px_options opt;
    uint32_t self;
    uint64_t rng;
    uint64_t now_ms;
    uint64_t wall_ms;           /* of the event being stepped (px.h) */
    bool started;               /* first event seen (timers armed) */

    /* configuration in force */
    px_members members;
    bool self_voter;

    /* role */
    uint8_t role;               /* enum px_role */
    uint32_t leader_id;
    px_ballot ballot;           /* current leader's (or own) ballot */
    px_ballot promise;          /* acceptor: highest promised */
    px_ballot durable_promise;  /* highest promise known durable */
    uint64_t max_round_seen;
    uint64_t last_leader_contact_ms;
    uint64_t election_deadline_ms;

    /* slot ring: valid cells lie in [first_retained, first_retained+cap) */
    px_cell *cells;
    uint64_t cap, mask;
    uint64_t first_retained;
    uint64_t counted_to;        /* retained_bytes sums the committed cells
                                   in [first_retained, counted_to] */
    uint64_t retained_bytes;
    uint64_t commit;            /* == applied after every step */
    uint64_t log_max;           /* highest slot ever stored (hint) */
    uint64_t acc_durable;       /* see acceptor.c invariant 3 */
    uint64_t last_claim;        /* highest slot vouched for to the leader */
    uint64_t leader_commit;     /* highest commit heard from the leader */
    uint64_t catchup_ms, catchup_slot;
    uint64_t snapshot_req_ms;
    uint64_t chain_base;        /* the host's chain starts after this
                                   (px_set_chain_base) */
    bool checkpoint_pending;    /* leader: propose `checkpoint` next */
    px_checkpoint checkpoint;

    /* persistence */
    uint64_t next_persist_id;
    px_persist_rec recs[PX_PERSIST_RECORDS];
    uint32_t rec_head, rec_count;
    uint64_t cur_persist_id;    /* id of the output being built, 0 = none */
    uint64_t cur_lo, cur_hi;

    /* leader */
    px_peer peers[PX_MAX_MEMBERS];
    uint32_t n_peers;
    uint64_t next_slot;         /* next slot to propose */
    uint64_t leader_start_slot; /* first slot proposed in our ballot */
    uint64_t read_fence_slot;   /* last slot phase 1 recovered (or our
                                   first own slot): no read is served
                                   before commit reaches it (reads.c) */
    uint64_t quorum_ok_ms;      /* last time a quorum was in contact */
    uint64_t wake_ms;           /* the tick the last step asked for */
    uint64_t next_heartbeat_ms;
    uint64_t commit_notice_at_ms;  /* 0, or when COMMIT goes to every peer */
    uint64_t lazy_due_ms;          /* 0, or when peers a batch skipped
                                      (thrifty phase 2) get what they lack */
    uint64_t config_slot;       /* members.c: our CONFIG entry in flight,
                                   nothing proposed above it until it
                                   commits; 0: none */
    bool reelect;               /* members.c invariant 6: phase 1 again once
                                   config_slot commits */
    uint32_t transfer_to;       /* members.c: handing over to this voter */
    uint64_t transfer_until_ms; /* ... given up at this time */
    uint64_t bcast_lo, bcast_hi; /* slots proposed during this step */
    bool commit_moved;
    uint64_t hb_round, hb_confirmed;
    uint64_t hb_sent_ms[PX_LEASE_ROUNDS]; /* send time of round k, at
                                             k % PX_LEASE_ROUNDS */
    uint64_t lease_until_ms;    /* reads.c: reads served without a round
                                   while now < this (leader only) */
    uint64_t quiet_until_ms;    /* no promise before (reads.c inv. 5) */
    bool quiet_on_start;        /* restored from durable state */
    uint64_t lease_first_round; /* rounds of this leadership start here */
    uint64_t fread_base;        /* this incarnation's first round - 1 */
    uint64_t fread_round;       /* follower read rounds (reads.c inv. 7) */
    uint64_t fread_answered;    /* the highest of them the leader answered */
    bool need_round;
    /* follower leases (reads.c invariant 8) */
    struct {
        uint32_t id;
        uint64_t until_ms;      /* its lease may hold until then (our
                                   clock); kept across roles, lost only
                                   with the process */
    } fl_grants[PX_FL_GRANTS];
    uint64_t fl_granted_until;  /* the latest of them: no promise before */
    uint64_t fl_base;           /* this incarnation's first round - 1 */
    uint64_t fl_round;          /* our rounds asking for a lease */
    uint64_t fl_sent_ms[PX_LEASE_ROUNDS];
    uint64_t fl_want_until_ms;  /* reads were served here: ask until then */
    uint64_t fl_ask_ms;         /* our last ask outright (px_fl_renew) */
    uint64_t vote_hi;           /* leader: highest slot its own vote went
                                   out for (leader.c invariant 9) */
    uint64_t leader_vote;       /* follower: the leader's own vote in
                                   `ballot` covers slots up to this
                                   (learner.c invariant 6) */
    uint64_t fl_until_ms;       /* our lease holds until then (own clock) */
    px_ballot fl_ballot;        /* ... in this ballot, */
    uint32_t fl_leader;         /* ... granted by this leader */
    uint64_t fl_floor;          /* commit index the grants carried */
    uint64_t acc_top;           /* highest slot accepted in `promise` */

    px_election el;
    px_queue q;
    uint64_t fwd_wait_ms;       /* re-forward after this long: doubles with
                                   every re-send round until a forwarded
                                   request commits (forward.c invariant 5) */
    px_readq lreads;            /* leader: reads awaiting a round */
    px_readq freads;            /* non-leader: reads asked of the leader */

    uint64_t chain_index;
    uint8_t chain_hash[PX_HASH_BYTES];

    /* recovery of an incomplete acceptor state (recovery.c) */
    bool recovering;
    uint8_t rec_phase;          /* enum px_rec_phase */
    px_ballot rec_ballot;       /* ballot of the round in progress */
    uint64_t rec_start;         /* slot its PREPAREs asked from */
    uint64_t rec_slot;          /* highest slot a voter reported */
    uint64_t rec_sent_ms;       /* last PREPAREs sent (or round given up) */

    /* the host can no longer persist (suspend.c) */
    bool suspended;
    bool suspend_settled;       /* the first suspended step ran */

    px_stats stats;
    px_outbuf out;
};

/* ------------------------------------------------------------ prototypes */

/* msg.c */
bool px_msg_valid(const px_replica *r, const px_msg *m);
bool px_msg_in_reach(const px_replica *r, const px_msg *m);
bool px_ballot_is_null(px_ballot b);

/* members.c */
uint32_t px_members_quorum(const px_members *m);
bool px_members_is_voter(const px_members *m, uint32_t id);
bool px_members_is_member(const px_members *m, uint32_t id);
void px_members_apply(px_replica *r, const px_members *m);
int px_change_check(const px_replica *r, const px_event *ev);
void px_change_members(px_replica *r, const px_event *ev);
void px_transfer_start(px_replica *r, uint32_t to);
void px_transfer_tick(px_replica *r);
void px_config_committed(px_replica *r, const px_cell *c);
void px_on_timeout_now(px_replica *r, const px_msg *m);
px_peer *px_peer_find(px_replica *r, uint32_t id);
uint64_t px_quorum_value(const px_replica *r, uint64_t self_value,
                         bool use_match);

/* log.c */
px_cell *px_log_get(const px_replica *r, uint64_t slot);
bool px_log_fits(const px_replica *r, uint64_t slot);
int px_log_put(px_replica *r, uint64_t slot, px_ballot b, uint64_t time_ms,
               uint8_t kind, uint32_t len, const uint8_t *data, px_cell **out);
int px_cell_set(px_cell *c, uint32_t len, const uint8_t *data);
void px_cell_release(px_cell *c);
void px_log_compact(px_replica *r);
void px_log_drop_through(px_replica *r, uint64_t slot);
int px_log_init(px_replica *r, uint64_t min_ahead);
void px_log_free(px_replica *r);
bool px_persist_room(const px_replica *r);
uint64_t px_persist_cur(px_replica *r);
void px_persist_promise(px_replica *r);
void px_persist_accept(px_replica *r, px_cell *c);
void px_persist_finish(px_replica *r);
void px_persisted(px_replica *r, uint64_t id);
void px_entry_from_cell(px_entry *e, const px_cell *c);

/* replica.c: output building */
int px_out_msg(px_replica *r, uint8_t type, uint32_t to, px_ballot b);
int px_out_entry(px_replica *r, int msg_idx, const px_cell *c);
int px_out_request(px_replica *r, int msg_idx, const px_req *q);
void px_out_committed(px_replica *r, const px_cell *c);
void px_out_read(px_replica *r, uint64_t token, uint64_t index, int status);
void px_out_failed(px_replica *r, uint64_t client_id, uint64_t seq, int st);
uint64_t px_rand_range(px_replica *r, uint64_t lo, uint64_t hi);
void px_reset_election_timer(px_replica *r);

/* acceptor.c */
void px_raise_promise(px_replica *r, px_ballot b);
void px_acc_advance(px_replica *r);
uint64_t px_acc_claim(px_replica *r);
void px_on_prepare(px_replica *r, const px_msg *m);
void px_on_accept(px_replica *r, const px_msg *m);
void px_on_heartbeat(px_replica *r, const px_msg *m);
void px_on_commit(px_replica *r, const px_msg *m);
void px_on_persisted_acceptor(px_replica *r);
void px_follow(px_replica *r, uint32_t leader, px_ballot b);
/* reads.c: heartbeat rounds and the read lease */
void px_round_start(px_replica *r);
bool px_lease_renew_due(const px_replica *r);
void px_fl_stamp(px_replica *r, px_msg *m);
bool px_fl_peer_leased(const px_replica *r, uint32_t id);
uint64_t px_fl_commit_cap(px_replica *r, uint64_t c, uint32_t except);
uint64_t px_fl_next_expiry(const px_replica *r);
void px_fl_note_ask(px_replica *r, px_peer *p, const px_msg *m);
void px_fl_renew(px_replica *r);
uint64_t px_fl_renew_at(const px_replica *r);
void px_fl_answer(px_replica *r);
uint64_t px_leader_read_floor(const px_replica *r);
void px_leader_vote(px_replica *r);
bool px_on_leader_vote(px_replica *r, const px_msg *m);
void px_learn_leader_vote(px_replica *r);
void px_fl_take_grant(px_replica *r, const px_msg *m);
bool px_fl_holds(const px_replica *r, uint64_t now_ms);
bool px_lease_valid(const px_replica *r);

/* election.c */
void px_election_start(px_replica *r);
void px_on_promise(px_replica *r, const px_msg *m);
void px_election_tick(px_replica *r);
void px_election_check(px_replica *r);
void px_election_reset(px_replica *r);
void px_election_start_transfer(px_replica *r, px_ballot from);
void px_election_restart(px_replica *r);
void px_step_down(px_replica *r);

/* leader.c */
void px_become_leader(px_replica *r);
int px_propose_cell(px_replica *r, uint64_t slot, uint64_t time_ms,
                    uint8_t kind, uint32_t len, const uint8_t *data);
void px_leader_pump(px_replica *r);
/* Thrifty phase 2 (leader.c invariant 7): send p every slot it lacks;
 * send every peer what it lacks. */
void px_leader_send_missing(px_replica *r, px_peer *p);
bool px_heartbeat_to(px_replica *r, px_peer *p);
void px_leader_fill_lazy(px_replica *r);
void px_on_accepted(px_replica *r, const px_msg *m);
void px_on_heartbeat_ack(px_replica *r, const px_msg *m);
void px_on_reject(px_replica *r, const px_msg *m);
void px_leader_update_commit(px_replica *r);
void px_leader_tick(px_replica *r);
void px_leader_checkpoint(px_replica *r);

/* reads.c */
void px_on_read_index(px_replica *r, uint64_t token, uint32_t origin);
void px_on_read_msg(px_replica *r, const px_msg *m);
void px_reads_pump(px_replica *r);
void px_reads_fail_leader(px_replica *r);
void px_reads_fail_all(px_replica *r, int status);
int px_readq_init(px_readq *q);
void px_readq_free(px_readq *q);

/* learner.c */
void px_commit_to(px_replica *r, uint64_t slot);
void px_learn_from_leader(px_replica *r);
void px_on_catchup_req(px_replica *r, const px_msg *m);
void px_on_catchup(px_replica *r, const px_msg *m);
void px_on_snapshot_needed(px_replica *r, const px_msg *m);
void px_on_snapshot_installed(px_replica *r, uint64_t index,
                              const px_members *members,
                              const uint8_t hash[PX_HASH_BYTES]);
void px_request_catchup(px_replica *r, uint32_t to, bool force);
int px_learn_chosen(px_replica *r, const px_entry *e);

/* recovery.c */
enum px_rec_phase { PX_REC_START = 0, PX_REC_PREPARE = 1, PX_REC_WAIT = 2 };
bool px_is_vote(uint8_t type);
void px_recovery_tick(px_replica *r);
void px_recovery_on_promise(px_replica *r, const px_msg *m);
void px_recovery_on_reject(px_replica *r, const px_msg *m);
void px_recovery_check(px_replica *r);

/* suspend.c */
void px_suspended_step(px_replica *r, const px_event *ev);

/* forward.c */
int px_queue_init(px_queue *q, uint32_t cap);
void px_queue_free(px_queue *q);
int32_t px_queue_find(const px_queue *q, uint64_t client_id, uint64_t seq);
int px_queue_add(px_queue *q, const px_request *req, uint8_t list);
void px_queue_remove(px_queue *q, int32_t idx);
void px_queue_move(px_queue *q, int32_t idx, uint8_t list);
void px_queue_splice(px_queue *q, uint8_t from, uint8_t to);
void px_on_propose(px_replica *r, const px_request *reqs, uint32_t n);
void px_on_forward(px_replica *r, const px_msg *m);
void px_forward_pump(px_replica *r);
void px_forward_leader_changed(px_replica *r);
void px_forward_committed(px_replica *r, const px_cell *c);

#endif /* PAXOSFS_PX_INT_H */
