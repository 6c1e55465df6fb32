/*
 * remote_int.h - private to node/remote*.c: the state of a client-only
 * mount and what remote.c (protocol) offers remote_run.c (loop, start,
 * stop, the calls answered outside the stream).
 */
#ifndef PAXOSFS_NODE_REMOTE_INT_H
#define PAXOSFS_NODE_REMOTE_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "../fs/fs.h"
#include "../net/wire_mount.h"
#include "remote.h"

#define READ_RID_BIT (UINT64_C(1) << 63)   /* read rids; writes use seqs */
#define RETRY_MS 20
#define RECV_BATCH 512

enum { RD_KEY = 1, RD_LIST, RD_USAGE, RD_BARRIER, RD_RECHECK };

typedef struct wr {
    struct wr *prev, *next;
    uint64_t seq;
    uint8_t *op;
    uint32_t len;
    bool answered;
    bool sent;
    uint64_t deadline_ms;      /* 0: none (answered) */
    uint64_t sent_ms;
    uint64_t retry_ms;         /* 0, or resend then */
    fs_done_fn done;
    void *arg;
} wr;

typedef struct rd {
    struct rd *prev, *next;
    uint64_t rid;
    uint8_t kind;
    unsigned flags;
    uint32_t max;
    bool sent;
    uint64_t after_seq;        /* answered writes up to here first */
    uint64_t deadline_ms;
    uint64_t retry_ms;
    union {
        fs_read_fn key;
        fs_list_fn list;
        fs_usage_fn usage;
        fs_done_fn barrier;
    } done;
    void *arg;
    uint32_t key_len;
    char *key;
} rd;

struct remote {
    remote_config cfg;
    net_peer_addr servers[TRANSPORT_MAX_PEERS];
    keys key;
    bool keyed;
    char *mountpoint;
    void *zctx;
    void *sock;                /* DEALER to servers[cur] */
    void *sync_sock;           /* DEALER for synchronous text calls */
    uint32_t cur;
    uint64_t client_id;
    uint64_t next_seq, next_rid;
    uint8_t *buf;
    size_t buf_cap;

    /* the stream */
    bool subscribed;           /* a BEAT came on this connection */
    bool ever_subscribed;
    uint64_t seen;             /* applied index of the last BEAT */
    uint64_t told;             /* highest CHANGED index */
    uint64_t connected_ms, last_msg_ms, last_hello_ms, last_switch_ms;
    uint64_t last_rehello_ms;
    uint64_t no_writes_since;  /* the node refuses writes since (0: no) */
    uint32_t server_id, leader_id;
    uint64_t chain_head, chain_base;
    int can_write;

    /* .status: the node's, kept fresh */
    char *server_status;
    uint64_t status_rid, status_ms;

    wr *w_head, *w_tail;       /* by seq */
    uint64_t n_writes;
    rd *r_head, *r_tail;
    uint64_t n_reads;

    uint64_t failovers, moves, gaps, resent, malformed, rechecks;
    fs *mount;
    int signal_fd;
    bool stop;
};


uint64_t remote_now_ms(void);
int remote_send_on(remote *r, void *sock, const wire_mount_req *q);
int remote_use_server(remote *r, uint32_t idx, uint64_t now);
bool remote_receive(remote *r, uint64_t now);
void remote_timers(remote *r, uint64_t now);
void remote_fail_read(remote *r, rd *x, int result);
void remote_write_unlink(remote *r, wr *w);
void remote_backend(remote *r, fs_backend *be);

#endif
