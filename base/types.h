/*
 * types.h - the vocabulary the consensus core (consensus/) and the
 * storage and state machine (chain/) share: ballots, configurations,
 * entries and client requests, as plain data.  Neither side includes the
 * other's headers; both include this one (docs/design.md "Layers").
 */
#ifndef PAXOSFS_BASE_TYPES_H
#define PAXOSFS_BASE_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "limits.h"

#define PX_MAX_MEMBERS 16      /* voters + learners in one configuration */
#define PX_MAX_VALUE_BYTES LIMIT_ENTRY /* one slot's value, encoded batch */
#define PX_HASH_BYTES 32

/* ---------------------------------------------------------------- ballots */

/* Ballot = (round, node id), ordered by round, then node id.  (0, 0) is the
 * null ballot, below every real one. */
typedef struct px_ballot {
    uint64_t round;
    uint32_t node_id;
} px_ballot;

/* --------------------------------------------------------- configuration */

/* A configuration: who votes, who only learns.  Quorum = n_voters / 2 + 1. */
typedef struct px_members {
    uint32_t voters[PX_MAX_MEMBERS];
    uint32_t n_voters;
    uint32_t learners[PX_MAX_MEMBERS]; /* receive the log, never vote */
    uint32_t n_learners;
} px_members;

/* --------------------------------------------------------------- entries */

enum px_entry_kind {
    PX_ENTRY_NOOP = 0,   /* fills a hole left by a deposed leader */
    PX_ENTRY_BATCH = 1,  /* data = px batch encoding of client requests */
    PX_ENTRY_CONFIG = 2, /* data = px_members encoding (px_members_encode) */
    PX_ENTRY_CHECKPOINT = 3, /* data = px_checkpoint encoding: the state
                                digest a leader's snapshot found at an
                                earlier index; every replica compares */
};
#define PX_ENTRY_LAST PX_ENTRY_CHECKPOINT /* highest valid kind */

/* One slot's value together with the ballot it was accepted in. */
typedef struct px_entry {
    uint64_t slot;       /* slots start at 1; 0 means "none" */
    px_ballot ballot;    /* ballot in which this value was accepted */
    uint64_t time_ms;    /* stamped by the proposing leader; state machines
                            use this as the commit time, never a local clock */
    uint8_t kind;        /* enum px_entry_kind */
    uint32_t len;
    const uint8_t *data; /* len bytes */
} px_entry;

/* A client request: an opaque operation tagged for exactly-once.
 * `ack_seq`: every request of this client with seq < ack_seq has been
 * answered, so the session table may drop their results. */
typedef struct px_request {
    uint64_t client_id;
    uint64_t seq;        /* > 0, increasing per client */
    uint64_t ack_seq;
    uint32_t len;
    const uint8_t *op;   /* opaque to the replica */
} px_request;

#endif
