/*
 * wire_mount.h - the frames between a client-only mount (node/remote.c)
 * and the node that serves it (node/serve.c).
 *
 * They travel on a port of their own (the node's --client-port), one
 * ZeroMQ message per frame (no pieces: what a client may send is bounded
 * by one op, so the node's socket refuses any message above
 * WIRE_MOUNT_MAX_REQ with ZMQ_MAXMSGSIZE), with the frame header of
 * net/wire.h and two kinds: WIRE_MOUNT_REQ (client -> node) and
 * WIRE_MOUNT_MSG (node -> client).  docs/design.md "Client-only mounts"
 * has the protocol; the layouts are here.
 *
 * REQ body (37 bytes + len):
 *
 *   offset size meaning
 *   ------ ---- -------------------------------------------------------
 *        0    1 op, enum wire_mount_req_op
 *        1    8 rid: the request id the answer names (SUBMIT: the seq of
 *               the write in the client's exactly-once session)
 *        9    8 client_id: the client's session (HELLO, SUBMIT; else 0)
 *       17    8 arg: HELLO the index the client's stream reached (0: a
 *               new mount, nothing to resume); SUBMIT ack_seq; READ,
 *               LIST, USAGE the index whose changes the client was told
 *               (an FS_READ_APPLIED read is served from at least there);
 *               BLOCK the block index; else 0
 *       25    4 flags: SUBMIT 1 = answered; READ/LIST the FS_READ_* bits
 *               (1 value, 2 applied); else 0
 *       29    4 max: LIST keys per page (1..WIRE_MOUNT_PAGE_MAX); else 0
 *       33    4 len (SUBMIT <= LIMIT_OP op bytes; READ the key, LIST the
 *               key to list after, each <= LIMIT_KEY; else 0)
 *       37  len bytes
 *
 * MSG body (97 bytes + len):
 *
 *        0    1 op, enum wire_mount_msg_op
 *        1    8 rid: the request answered; CHANGED the index of the entry
 *               that changed the key; BEAT 0
 *        9    4 result (i32): 0 or a negative errno
 *       13   24 a, b, c (u64 each): BEAT applied index, chain head,
 *               chain base; USAGE keys, bytes, 0; else 0
 *       37    4 server: BEAT the node's id
 *       41    4 leader: BEAT the leader the node follows (0: none known)
 *       45    4 flags: BEAT 1 = the resume index was too old (a gap), 2 =
 *               the node would refuse writes now (a = result); PAGE 1 =
 *               more keys may follow
 *       49   40 meta (CHANGED, ENTRY): ident u64, version u64, mtime_ms
 *               u64, len u32, uid u32, gid u32, mode u32
 *       89    4 n: PAGE the number of keys; else 0
 *       93    4 len
 *       97  len bytes: CHANGED the key (<= LIMIT_KEY); ENTRY the value
 *               (<= LIMIT_VALUE); TEXT the text (<= WIRE_MOUNT_MAX_TEXT);
 *               PAGE n records of key_len u16, key, meta (40 bytes)
 *
 * Decoding follows net/wire.h: -EPROTO for a bad header or another kind
 * or an unknown op, -EMSGSIZE over a limit, -EBADMSG for a truncated or
 * inconsistent body (a len that does not match, a field another op must
 * leave 0, a PAGE whose records do not fill len exactly).  Decoded bytes
 * point into the caller's buffer.
 */
#ifndef PAXOSFS_WIRE_MOUNT_H
#define PAXOSFS_WIRE_MOUNT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../base/limits.h"
#include "wire.h"

#define WIRE_MOUNT_REQ_FIXED 37u
#define WIRE_MOUNT_MSG_FIXED 97u
#define WIRE_MOUNT_META_BYTES 40u
#define WIRE_MOUNT_PAGE_MAX 1024u        /* keys per PAGE */
#define WIRE_MOUNT_MAX_TEXT (16u << 20)  /* .status, a block's text */
/* the largest REQ: one op (a node's socket refuses anything larger) */
#define WIRE_MOUNT_MAX_REQ (WIRE_HEADER_BYTES + WIRE_MOUNT_REQ_FIXED + LIMIT_OP)
#define WIRE_MOUNT_MAX_MSG (WIRE_HEADER_BYTES + WIRE_MOUNT_MSG_FIXED + \
                            WIRE_MOUNT_MAX_TEXT)

enum wire_mount_req_op {
    WIRE_MOUNT_HELLO = 1,   /* subscribe (and keep alive) */
    WIRE_MOUNT_SUBMIT,      /* a write: answered by DONE */
    WIRE_MOUNT_BARRIER,     /* a read point: DONE */
    WIRE_MOUNT_READ,        /* a key: ENTRY */
    WIRE_MOUNT_LIST,        /* a page of keys: PAGE */
    WIRE_MOUNT_USAGE,       /* the counts: USAGE */
    WIRE_MOUNT_STATUS,      /* the node's .status: TEXT */
    WIRE_MOUNT_BLOCK,       /* a chain block's text: TEXT */
    WIRE_MOUNT_SNAPSHOT,    /* the newest snapshot's text: TEXT */
    WIRE_MOUNT_MEMBERS,     /* the node's .cluster/members: TEXT */
    WIRE_MOUNT_REQ_LAST = WIRE_MOUNT_MEMBERS
};

enum wire_mount_msg_op {
    WIRE_MOUNT_BEAT = 1,    /* every 100 ms and after a HELLO */
    WIRE_MOUNT_CHANGED,     /* a key an applied entry changed */
    WIRE_MOUNT_DONE,        /* SUBMIT, BARRIER */
    WIRE_MOUNT_ENTRY,       /* READ */
    WIRE_MOUNT_PAGE,        /* LIST */
    WIRE_MOUNT_COUNTS,      /* USAGE */
    WIRE_MOUNT_TEXT,        /* STATUS, BLOCK, SNAPSHOT, MEMBERS */
    WIRE_MOUNT_MSG_LAST = WIRE_MOUNT_TEXT
};

#define WIRE_MOUNT_BEAT_GAP 1u
#define WIRE_MOUNT_BEAT_NO_WRITES 2u
#define WIRE_MOUNT_PAGE_MORE 1u
#define WIRE_MOUNT_SUBMIT_ANSWERED 1u
#define WIRE_MOUNT_READ_FLAGS 3u          /* FS_READ_VALUE | FS_READ_APPLIED */

/* A key's metadata as fs/fs.h fs_meta has it. */
typedef struct wire_mount_meta {
    uint64_t ident, version, mtime_ms;
    uint32_t len, uid, gid, mode;
} wire_mount_meta;

typedef struct wire_mount_req {
    uint8_t op;
    uint64_t rid;
    uint64_t client_id;
    uint64_t arg;
    uint32_t flags;
    uint32_t max;
    uint32_t len;
    const uint8_t *bytes;
} wire_mount_req;

typedef struct wire_mount_msg {
    uint8_t op;
    uint64_t rid;
    int32_t result;
    uint64_t a, b, c;
    uint32_t server, leader;
    uint32_t flags;
    wire_mount_meta meta;
    uint32_t n;
    uint32_t len;
    const uint8_t *bytes;
} wire_mount_msg;

/* Frame size, or 0 if the message breaks a rule above. */
size_t wire_mount_req_size(const wire_mount_req *r);
size_t wire_mount_msg_size(const wire_mount_msg *m);

/* Encode into buf[0..cap): -EINVAL (a rule broken), -EMSGSIZE (a limit),
 * -ENOSPC (cap too small). */
int wire_encode_mount_req_into(const wire_mount_req *r, uint8_t *buf,
                               size_t cap, size_t *out_len);
int wire_encode_mount_msg_into(const wire_mount_msg *m, uint8_t *buf,
                               size_t cap, size_t *out_len);

int wire_decode_mount_req(const uint8_t *buf, size_t len, wire_mount_req *r);
int wire_decode_mount_msg(const uint8_t *buf, size_t len, wire_mount_msg *m);

/* PAGE records: one record of key_len + 2 + WIRE_MOUNT_META_BYTES bytes. */
size_t wire_mount_record_size(size_t key_len);
/* Append a record at *p (room checked by the caller). */
void wire_mount_put_record(uint8_t **p, const char *key, uint16_t key_len,
                           const wire_mount_meta *meta);
/* The next record of a decoded PAGE's bytes (which decoding checked):
 * advances *p and *left. */
void wire_mount_get_record(const uint8_t **p, size_t *left, const char **key,
                           uint16_t *key_len, wire_mount_meta *meta);

#endif
