/*
 * client.h - the client handle: one mount's session with the replicated
 * store.  It numbers requests, keeps the writes in flight and the read
 * points waiting, answers each exactly once (applied, refused, failed or
 * timed out) and knows nothing of disks, sockets or the replica: the node
 * runtime drives it (node/loop.c) and a mount talks to it through the
 * fs_backend (fs/fs.h), in this process today and over the network for a
 * client-only mount.
 *
 *   mount --submit/read--> [ring | overflow FIFO | read table]
 *         <--done(result)--       |   ^
 *                     client_flush|   | client_applied / client_refused /
 *                                 v   | client_read_point / client_serve
 *                         px requests, read tokens (the runtime steps them)
 *
 * Writes: a ring of `window` slots (at most CLIENT_MAX_PENDING) indexed
 * by request seq (the exactly-once session table bounds a client's seqs in
 * flight); when it is full, writes wait in an overflow FIFO, in order, for a slot (overload
 * slows writers down, it never fails them).  Every submission gets a
 * ticket in submission order, so a read point can name "every write
 * submitted so far", also those still waiting for room.
 *
 * Reads: a read point is served once the applied state has reached the
 * read index the replica confirmed, and this client's writes up to the
 * newest one whose caller had already returned (a commit at release) are
 * applied: a process sees its own writes.  Writes whose callers still wait
 * are concurrent with the read, which need not wait for them.
 *
 * Deferred calls (client_defer): a read that needs no read point (served
 * from the applied state as it is) still completes later, at the next
 * client_flush, so that nothing runs inside the call that asked for it.
 *
 * Invariants:
 *   1. Every callback runs exactly once, and never inside client_submit,
 *      client_read or client_defer (the caller is not re-entered).
 *   2. Seqs in [low_seq, next_seq) are either in use or finished; the
 *      ring's lowest seq is always in use, so tickets leave in order.
 *   3. A write whose caller already returned ("answered") has no
 *      deadline: it keeps its op and is proposed again until it is
 *      applied or the client is failed as a whole (client_fail_all), also
 *      across a replaced replica (client_repropose).
 *   4. A read is answered 0 only while the runtime says the state may be
 *      served (client_serve's `serving`).
 */
#ifndef PAXOSFS_NODE_CLIENT_H
#define PAXOSFS_NODE_CLIENT_H

#include <stdbool.h>
#include <stdint.h>

#include "../consensus/px.h"

#define CLIENT_MAX_PENDING 1024   /* power of two, <= the session table's
                                     per-client bound (chain/kv.c) */
#define CLIENT_MAX_READS 65536    /* read points waiting */

typedef struct client client;

/* Completion: 0 or a negative errno. */
typedef void (*client_done_fn)(void *arg, int result);

typedef struct client_stats {
    uint64_t pending;            /* writes in the ring */
    uint64_t waiting;            /* writes waiting for room */
    uint64_t waited_total;       /* writes that ever had to wait */
    uint64_t answered_outstanding; /* writes made at release, not applied */
    uint64_t reads;              /* read points waiting */
} client_stats;

/* A client with the session id `id` whose callers wait at most
 * `timeout_ms` (writes made at release excepted) and which keeps at most
 * `window` writes in flight (a power of two <= CLIENT_MAX_PENDING; 0:
 * CLIENT_MAX_PENDING).  0, -EINVAL or -ENOMEM. */
int client_create(uint64_t id, uint64_t timeout_ms, uint32_t window,
                  client **out);

/* Free everything; callbacks still pending are not called (fail them
 * first with client_fail_all). */
void client_destroy(client *c);

uint64_t client_id(const client *c);
void client_get_stats(const client *c, client_stats *st);

/* Queue a write of `op` (copied).  `answered`: its caller already returned
 * (invariant 3).  0, or -ENOMEM (then `done` is never called). */
int client_submit(client *c, uint64_t now_ms, const uint8_t *op,
                  uint32_t len, bool answered, client_done_fn done,
                  void *arg);

/* Queue a read point.  0, or -EAGAIN when CLIENT_MAX_READS wait. */
int client_read(client *c, uint64_t now_ms, client_done_fn done, void *arg);
/* A read whose read point is known already (a follower lease gave it):
 * served once the state applied `index`, like a read point's.  0, or
 * -EAGAIN when CLIENT_MAX_READS wait. */
int client_read_at(client *c, uint64_t now_ms, uint64_t index,
                   client_done_fn done, void *arg);

/* Run `done(arg, 0)` at the next client_flush, before anything else it
 * does (a read from the applied state, without a read point).  0 or
 * -ENOMEM. */
int client_defer(client *c, client_done_fn done, void *arg);

/* Whether deferred calls wait: the runtime must not sleep before its next
 * client_flush. */
bool client_has_deferred(const client *c);

/* Hand the runtime what was queued: deferred calls first (those queued
 * before this call; what they queue waits for the next), writes the
 * replica refused last turn
 * first (once per call), then new writes, in batches to `propose`; then
 * the new read points to `read`, all in one call.  The replica copies the
 * ops it takes; an op is freed after its batch unless client_refused
 * marked it for another try during that batch. */
typedef void (*client_propose_fn)(void *arg, px_request *reqs, uint32_t k);
typedef void (*client_read_fn)(void *arg, const uint64_t *tokens,
                               uint32_t n);
void client_flush(client *c, client_propose_fn propose, client_read_fn read,
                  void *arg);

/* The part of client_flush that needs no batching, for the runtime to run
 * between two requests of the mount: the deferred calls queued so far,
 * and, when `read` is not NULL, the new read points.  Writes wait for the
 * next client_flush.  Returns whether it did anything. */
bool client_flush_reads(client *c, client_read_fn read, void *arg);

/* Request `seq` was applied with `result`. */
void client_applied(client *c, uint64_t seq, int result);

/* The replica did not take request `seq`: -EAGAIN or -ENOMEM keep it for
 * the next client_flush, any other status fails it. */
void client_refused(client *c, uint64_t seq, int status);

/* The replica answered read `token`: the read index, or a negative status
 * (-EAGAIN: no leader could confirm it; asked again until the deadline). */
void client_read_point(client *c, uint64_t token, int status,
                       uint64_t index, uint64_t now_ms);

/* The applied index and whether the state may be served now; serves every
 * read point this allows. */
void client_serve(client *c, uint64_t applied, bool serving);

/* Fail what passed its deadline with -ETIMEDOUT. */
void client_expire(client *c, uint64_t now_ms);

/* Fail everything outstanding with `result` (deferred calls too). */
void client_fail_all(client *c, int result);

/* Fail every caller that waits (writes, reads, deferred calls) with
 * `result`; writes made at release (invariant 3) stay, to be proposed
 * again. */
void client_fail_callers(client *c, int result);

/* The replica was replaced (its queue is gone): propose every write still
 * in flight again at the next client_flush, under its own seq (the
 * session table applies a request once, whichever copy commits).  Writes
 * whose callers waited were failed before (client_fail_callers); those
 * made at release kept their ops for this. */
void client_repropose(client *c);

#endif
