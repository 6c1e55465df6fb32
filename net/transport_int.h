/*
 * transport_int.h - private to net/transport*.c: the transport's state.
 */
#ifndef PAXOSFS_TRANSPORT_INT_H
#define PAXOSFS_TRANSPORT_INT_H

#include "transport.h"

#include <zmq.h>

#include "zap.h"

#define TRANSPORT_MONITOR_BATCH 1024  /* monitor events per call */
#define TRANSPORT_MONITOR_HWM 10000   /* events queued for the loop */
#define TRANSPORT_MONITOR_ENDPOINT "inproc://paxosfs-router-monitor"
#define TRANSPORT_MONITOR_EVENTS                                         \
    (ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED |                       \
     ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | \
     ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)

typedef struct peer {
    net_peer_addr addr;
    void *dealer;                /* NULL for ourselves */
    transport_peer_stats st;
    uint64_t last_log_ms;
    uint64_t unlogged_drops;
    /* catch-up budget (invariant 6) */
    int64_t catchup_tokens;      /* bytes; may go below 0 by one response */
    uint64_t catchup_refill_ms;
    uint64_t catchup_last_ms;    /* last request served, and what it was */
    uint64_t catchup_last_slot, catchup_last_commit;
    uint64_t catchup_log_ms;
} peer;

/* What the monitor knows about a connection to the ROUTER, by socket
 * descriptor (invariant 5). */
enum { CONN_NONE = 0, CONN_HANDSHAKE = 1, CONN_UP = 2 };

/* A frame arriving in pieces from one connection (wire.h). */
typedef struct reasm {
    uint8_t id[256];             /* the connection's ZeroMQ routing id */
    size_t id_len;
    bool active;                 /* a frame is being joined */
    uint8_t *buf;                /* kept between frames */
    size_t cap;                  /* bytes at buf */
    size_t total, len;           /* the frame's size, bytes so far */
    uint64_t seq;                /* last progress, in pieces */
} reasm;

/* Socket kinds behind the poll descriptors, in transport_poll_fds order. */
enum { POLL_ROUTER = 0, POLL_ZAP = 1, POLL_MONITOR = 2 };

struct transport {
    uint32_t self_id;
    void *ctx;
    void *router;
    zap *zap;
    void *monitor;               /* PAIR receiving the ROUTER's events */
    peer peers[TRANSPORT_MAX_PEERS];
    uint32_t n_peers;
    uint64_t unknown_drops;      /* frames that name no member */
    uint64_t last_unknown_log_ms;
    int poll_kind[TRANSPORT_POLL_FDS];   /* POLL_* per transport_poll_fds */
    int n_poll;
    /* connection monitor (invariant 5) */
    uint8_t *conn;               /* CONN_* by descriptor */
    size_t conn_cap;
    uint64_t in_handshake;       /* descriptors in CONN_HANDSHAKE */
    uint64_t unplaced_ups;       /* finished handshakes not yet tied to a
                                    descriptor (libzmq does not say which) */
    uint64_t unclosed_failures;  /* failure events whose close is to come */
    transport_conn_stats conns;
    uint64_t last_reject_log_ms;
    reasm reasm[TRANSPORT_REASM_SLOTS];   /* frames in pieces */
    uint64_t reasm_bytes;        /* allocated for them */
    uint32_t reasm_active;       /* slots joining a frame */
    uint64_t reasm_seq;
    const keys *key;             /* cluster key (the caller's), or NULL */
    uint64_t removed;            /* peers removed (transport_remove_peer) */
    transport_member_fn member_fn;   /* MEMBER frames */
    void *member_arg;
    transport_snap_fn snap_fn;   /* SNAPSHOT and SNAPSHOT_ASK frames */
    void *snap_arg;
};

/* transport_monitor.c (invariant 5) */
void transport_conn_seen(transport *t, int fd);   /* a piece came from fd */
bool transport_monitor_one(transport *t, uint64_t now_ms);  /* one event */

#endif
