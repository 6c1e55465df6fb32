/*
 * zap.h - the paxosfs ZAP handler (ZeroMQ Authentication Protocol, RFC 27):
 * decides which peers may complete a handshake with this node's sockets.
 *
 * Policy: with a cluster key configured, a peer is admitted (200) only if
 * it uses CURVE and presents the cluster public key as its own key
 * (keys.h explains why one shared keypair); anything else (another CURVE
 * key, the NULL or PLAIN mechanism, a malformed request) is refused (400,
 * or 500 for a request that does not follow RFC 27) and counted.  Without
 * a key (k == NULL, an unauthenticated development cluster) only NULL is
 * admitted.
 *
 * The handler lives in the node loop, not in a thread of its own: libzmq
 * holds each handshake until the reply arrives, so the loop adds
 * zap_socket() to its zmq_poll set and calls zap_handle() while it reports
 * ZMQ_POLLIN.  One handler per ZeroMQ context (it binds the fixed address
 * inproc://zeromq.zap.01); open it before any socket that should be
 * protected accepts connections, since libzmq admits every CURVE client
 * when no handler is bound.
 *
 * Errors: 0 or a negative errno.
 */
#ifndef PAXOSFS_ZAP_H
#define PAXOSFS_ZAP_H

#include <stdint.h>

#include "keys.h"

typedef struct zap zap;

/* Bind the handler in `zmq_ctx`.  `k` (copied; may be NULL, see above)
 * is the cluster key.  -EADDRINUSE if the context already has a handler. */
int zap_open(void *zmq_ctx, const keys *k, zap **out);

/* The ZMQ_REP socket to poll for ZMQ_POLLIN. */
void *zap_socket(const zap *z);

/* Answer one pending request without blocking.  0: one request answered;
 * -EAGAIN: none pending; another negative errno: the socket failed. */
int zap_handle(zap *z);

/* Requests refused / admitted since zap_open. */
uint64_t zap_rejections(const zap *z);
uint64_t zap_admissions(const zap *z);

/* Close the socket and free z (NULL ok). */
void zap_close(zap *z);

#endif /* PAXOSFS_ZAP_H */
