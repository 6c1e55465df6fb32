/*
 * transport.h - peer messaging of a paxosfs node over ZeroMQ.
 *
 * Each node binds one ROUTER socket for everything it receives and keeps
 * one DEALER per peer for what it sends (DESIGN.md).  Frames are encoded
 * by net/wire.c.  With a cluster key every socket uses CURVE and the ZAP
 * handler (net/zap.c) admits only holders of the key.
 *
 * Invariants:
 *  1. Memory is bounded: each DEALER queues at most
 *     TRANSPORT_SEND_HWM messages for a peer that is down; beyond that a
 *     send is dropped and counted (Paxos retries what matters).
 *  2. A frame that does not decode, is addressed to another node, comes
 *     from a node outside the configuration or from a blocked peer is
 *     dropped and counted, and logged at most once per peer per
 *     TRANSPORT_LOG_INTERVAL_MS; it never reaches the replica.
 *  3. transport_send never blocks.
 *  4. Nothing is spent on a connection before it is authenticated beyond
 *     one bounded piece: every socket refuses a ZeroMQ message above
 *     TRANSPORT_MAX_MSG_BYTES (ZMQ_MAXMSGSIZE, which libzmq also applies
 *     to the CURVE handshake commands: the connection is dropped at the
 *     declared size, before anything is allocated), and a handshake not
 *     finished within TRANSPORT_HANDSHAKE_MS is dropped.
 *  5. Every connection to the ROUTER that is refused or dropped before its
 *     handshake finished is counted (transport_conn_stats), whatever the
 *     reason: a socket monitor reports libzmq's handshake failures (no
 *     CURVE or a wrong server key: "protocol"; a wrong client key, refused
 *     by the ZAP handler: "auth"; time-outs and resets: "other"), and a
 *     connection that closes while still in its handshake without such an
 *     event (an oversized or malformed handshake frame) is "dropped".
 *  6. Catch-up work is bounded per peer: a peer's catch-up requests are
 *     served only while its byte budget (TRANSPORT_CATCHUP_RATE per
 *     second, at most TRANSPORT_CATCHUP_BURST banked) is positive, and a
 *     request repeating one served less than TRANSPORT_CATCHUP_REPEAT_MS
 *     ago is not served again; refused requests are counted
 *     (catchup_dropped).  A response costs its encoded size, so what a
 *     peer can make this node read and queue is bounded in bytes per
 *     second, however many requests it sends.
 */
#ifndef PAXOSFS_TRANSPORT_H
#define PAXOSFS_TRANSPORT_H

#include <stdbool.h>
#include <stdint.h>

#include <zmq.h>

#include "../consensus/px.h"
#include "keys.h"
#include "wire.h"

/* Members this node talks to, itself included: the bound of a
 * configuration (voters and learners, base/types.h PX_MAX_MEMBERS). */
#define TRANSPORT_MAX_PEERS PX_MAX_MEMBERS
#define TRANSPORT_SEND_HWM 10000
#define TRANSPORT_LOG_INTERVAL_MS 10000
/* The largest ZeroMQ message a socket accepts: one piece (net/wire.h: a
 * flags byte and WIRE_PART_BYTES of frame) plus what CURVE adds to it (a
 * MESSAGE command: 8-byte name, 8-byte nonce, flags byte, 16-byte tag =
 * 33 bytes), rounded up.  CURVE handshake commands are a few hundred
 * bytes. */
#define TRANSPORT_CURVE_OVERHEAD 64
#define TRANSPORT_MAX_MSG_BYTES (WIRE_PART_BYTES + TRANSPORT_CURVE_OVERHEAD)
/* A connection whose ZeroMQ handshake (greeting, CURVE, ZAP) has not
 * finished after this long is dropped (ZMQ_HANDSHAKE_IVL; libzmq's default
 * is 30 s).  Members finish theirs in milliseconds. */
#define TRANSPORT_HANDSHAKE_MS 5000
/* Pieces (wire.h) queued per connection before ZeroMQ stops reading it:
 * at most 32 MiB a connection can make a node hold in its queue.  Frames
 * being joined from their pieces take at most TRANSPORT_REASM_BYTES in
 * TRANSPORT_REASM_SLOTS frames; past that the frame that progressed least
 * recently is dropped (counted) to make room. */
#define TRANSPORT_RECV_HWM 512
#define TRANSPORT_REASM_SLOTS TRANSPORT_MAX_PEERS
#define TRANSPORT_REASM_BYTES (128u << 20)
/* Invariant 6.  A lagging member catches up at up to 16 MiB/s from each
 * node it asks (it asks again as soon as a piece arrives; a piece is at
 * most 4 MiB and one block). */
#define TRANSPORT_CATCHUP_RATE (16u << 20)       /* bytes per second */
#define TRANSPORT_CATCHUP_BURST (8u << 20)       /* bytes banked */
#define TRANSPORT_CATCHUP_REPEAT_MS 200

typedef struct net_peer_addr {
    uint32_t id;
    char host[256];
    uint16_t port;
} net_peer_addr;

/* Parse "1=host:port,2=host:port,...".  0 or -EINVAL with err filled. */
int net_parse_peers(const char *spec, net_peer_addr *out, uint32_t cap,
                    uint32_t *n, char *err, size_t err_len);

typedef struct transport transport;

typedef struct transport_peer_stats {
    uint32_t id;
    bool blocked;
    uint64_t sent;
    uint64_t send_dropped;      /* queue full or blocked */
    uint64_t received;
    uint64_t recv_dropped;      /* malformed, misaddressed, blocked */
    uint64_t last_recv_ms;      /* 0 = never */
    uint64_t last_commit;       /* commit index the peer last reported */
    uint64_t catchup_served;    /* catch-up requests admitted */
    uint64_t catchup_dropped;   /* refused: over budget or a repeat */
    uint64_t catchup_bytes;     /* bytes of catch-up sent */
} transport_peer_stats;

/* The replica's input: called for every accepted message. */
typedef void (*transport_recv_fn)(void *arg, const px_msg *m);
/* A peer's chain head (index, hash), for divergence checks. */
typedef void (*transport_head_fn)(void *arg, uint32_t from, uint64_t index,
                                  const uint8_t hash[PX_HASH_BYTES]);

/* A snapshot transfer frame from a member, addressed to this node:
 * exactly one of chunk and ask is non-NULL (net/snapxfer.h); chunk data
 * is valid during the call only. */
typedef void (*transport_snap_fn)(void *arg, uint32_t from,
                                  const wire_snapshot *chunk,
                                  const wire_snapshot_ask *ask);

/* A MEMBER frame from a member, addressed to this node (wire.h); its text
 * is valid during the call only. */
typedef void (*transport_member_fn)(void *arg, const wire_member *m);

/* Open the sockets in ZeroMQ context `ctx` (owned by the caller, which
 * terminates it after transport_close).  `key` is the cluster key, or NULL
 * for an unauthenticated cluster.  0 or a negative errno with a message in
 * err. */
int transport_open(void *ctx, uint32_t self_id, const net_peer_addr *peers,
                   uint32_t n_peers, const keys *key, transport **out,
                   char *err, size_t err_len);
void transport_close(transport *t);

/* The configuration changed (node/members.c): connect to a new member /
 * forget a removed one.  `key` given at transport_open must still be
 * valid.  Add: 0, -EEXIST (already a peer; err says so when at another
 * address), -ENOSPC (TRANSPORT_MAX_PEERS peers already), -EINVAL or a
 * ZeroMQ failure (err).  Remove: 0 or -ENOENT (not a peer, or this node);
 * its DEALER and whatever it still queued are dropped at once, and from
 * then on its frames are dropped and counted as from a non-member
 * (invariant 2, transport_unknown_drops).  Peer indexes
 * (transport_peer_stats_get) may change on either. */
int transport_add_peer(transport *t, const net_peer_addr *a, char *err,
                       size_t err_len);
int transport_remove_peer(transport *t, uint32_t id);
uint64_t transport_removed_peers(const transport *t);

/* The ZMQ_FDs the loop must poll (the ROUTER, the ZAP handler when keyed,
 * the ROUTER's connection monitor): readable when a socket may have
 * input.  ZeroMQ signals only changes, so the loop may block on them only
 * after transport_receive drained every socket (it returned false).
 * Returns how many were written to fds (cap >= TRANSPORT_POLL_FDS). */
#define TRANSPORT_POLL_FDS 3
int transport_poll_fds(transport *t, int *fds, int cap);

/* Serve the ZAP handler, read the connection monitor and drain the ROUTER
 * (bounded per call), calling fn for every accepted message and head_fn
 * for every chain head; only the sockets whose bit is set in `which`: bit
 * i stands for fds[i] of transport_poll_fds.  `now_ms` stamps
 * last-contact times.  True when it stopped at a bound: more may be
 * waiting, poll without blocking. */
bool transport_receive(transport *t, unsigned which, uint64_t now_ms,
                       transport_recv_fn fn, transport_head_fn head_fn,
                       void *arg);

/* Where SNAPSHOT and SNAPSHOT_ASK frames go (checked like every frame:
 * from a member, to this node, link not blocked); without a handler they
 * are dropped and counted. */
void transport_set_snapshot_handler(transport *t, transport_snap_fn fn,
                                    void *arg);

/* Where MEMBER frames go (checked like every frame); without a handler
 * they are dropped and counted. */
void transport_set_member_handler(transport *t, transport_member_fn fn,
                                  void *arg);

/* Send this node's chain head to every peer (dropped where a queue is
 * full, like any frame). */
void transport_send_chain_head(transport *t, uint64_t index,
                               const uint8_t hash[PX_HASH_BYTES]);

/* Encode and queue `m` for m->to.  0, or a negative errno when dropped
 * (counted). */
int transport_send(transport *t, const px_msg *m);

/* Send an already encoded frame to `peer` (snapshot/catch-up streams). */
int transport_send_frame(transport *t, uint32_t peer, const uint8_t *frame,
                         size_t len);

/* Invariant 6: may a catch-up request from `peer` for slots from `slot`
 * (the requester's commit index `commit`) be served now?  Counts a
 * refusal. */
bool transport_catchup_admit(transport *t, uint32_t peer, uint64_t now_ms,
                             uint64_t slot, uint64_t commit);
/* Charge `bytes` of catch-up sent to `peer` against its budget. */
void transport_catchup_charge(transport *t, uint32_t peer, uint64_t bytes);

/* Fault switch: drop all traffic to and from `peer` until healed. */
int transport_block(transport *t, uint32_t peer, bool blocked);

uint32_t transport_peer_count(const transport *t);
void transport_peer_stats_get(const transport *t, uint32_t i,
                              transport_peer_stats *st);
/* Connections to this node's ROUTER (invariant 5). */
typedef struct transport_conn_stats {
    uint64_t accepted;          /* TCP connections accepted */
    uint64_t handshakes;        /* handshakes that finished */
    uint64_t rejected;          /* the sum of the four below */
    uint64_t failed_protocol;   /* no CURVE, wrong server key, malformed */
    uint64_t failed_auth;       /* refused by the ZAP handler */
    uint64_t failed_other;      /* handshake time-out, reset by the peer */
    uint64_t dropped;           /* closed in the handshake without an event
                                   (oversized or malformed frame) */
} transport_conn_stats;
void transport_conn_stats_get(const transport *t, transport_conn_stats *st);
/* = transport_conn_stats.rejected */
uint64_t transport_rejected_connections(const transport *t);
/* Frames dropped before a sender could be named (undecodable). */
uint64_t transport_unknown_drops(const transport *t);

#endif
