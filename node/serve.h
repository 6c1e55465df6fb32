/*
 * serve.h - a node's endpoint for client-only mounts (node/remote.c):
 * a ROUTER on a port of its own (--client-port), speaking the frames of
 * net/wire_mount.h, with the cluster key's CURVE and ZAP as the peer
 * port has.  A client is not a member: it has no vote and is never
 * counted in a quorum; to the replica it is one more exactly-once session.
 *
 *   client --HELLO(client id, resume index)--> subscribed: BEATs every
 *          SERVE_BEAT_MS, CHANGED for every key an applied entry changes
 *          (replayed from a ring of recent changes on resume)
 *          --SUBMIT(seq, ack_seq, op)--> proposed as px_request{client
 *          id, seq}: DONE(seq, result) when applied (any copy of it: the
 *          session table answers a retry with the stored result)
 *          --READ/LIST/USAGE/BARRIER--> this node's fs_backend, as its
 *          own mount reads (a read point from the leader, served once
 *          applied here): ENTRY/PAGE/COUNTS/DONE
 *          --STATUS/BLOCK/SNAPSHOT--> TEXT
 *
 * Invariants:
 *   1. Per client, CHANGED messages, DONE of writes and read answers
 *      leave in the order the state applied them (one loop thread, one
 *      connection, sent as they happen), so the client can keep the
 *      fs.h rule B2 for its mount.
 *   2. Nothing a client sends is trusted: a frame that does not decode,
 *      or asks before HELLO, is dropped and counted; at most
 *      SERVE_MAX_CLIENTS subscribers, SERVE_MAX_READS reads in flight.
 *   3. A message that cannot be queued for a client (its queue full)
 *      ends its subscription: it sends nothing more to it, so the client
 *      sees silence, subscribes again and resumes from its index, never
 *      a stream with a hole.
 */
#ifndef PAXOSFS_NODE_SERVE_H
#define PAXOSFS_NODE_SERVE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "../fs/fs.h"
#include "../net/keys.h"

#define SERVE_MAX_CLIENTS 64
#define SERVE_MAX_READS 16384
#define SERVE_BEAT_MS 100
#define SERVE_CLIENT_IDLE_MS 5000   /* no HELLO for this long: gone */
#define SERVE_RING 65536            /* changes kept for resuming clients */
#define SERVE_RING_BYTES (16u << 20)

typedef struct serve serve;
struct node;

/* ring: changes kept for resuming clients (0: SERVE_RING). */
int serve_open(struct node *n, void *zctx, const char *where, uint16_t port,
               const keys *key, uint32_t ring, serve **out, char *err,
               size_t err_len);
void serve_close(serve *s);

/* The ZMQ_FD to poll. */
int serve_fd(const serve *s);

/* Drain requests (bounded per call): true if it stopped at the bound. */
bool serve_receive(serve *s, uint64_t now_ms);

/* Once per loop turn: propose the writes received, send BEATs when due,
 * forget silent clients. */
void serve_turn(serve *s, uint64_t now_ms);

/* The state applied an entry that changed `key` (index: the entry's). */
void serve_changed(serve *s, const char *key, size_t key_len,
                   const fs_meta *now, uint64_t index);

/* A request of session `who` was applied, or refused by the replica. */
void serve_result(serve *s, uint64_t who, uint64_t seq, int32_t result);

/* .status: "clients":{...} */
void serve_status_json(const serve *s, FILE *fp);

#endif
