/*
 * wire.h - the paxosfs wire format: every byte that crosses the network
 * between paxosfs processes is encoded and decoded here, and only here.
 *
 * A frame travels in pieces, one ZeroMQ message each: a frame of up to
 * WIRE_PART_BYTES is one piece, a larger one is cut into consecutive
 * pieces of WIRE_PART_BYTES (the last may be shorter).  A piece is
 *
 *   offset size meaning
 *   ------ ---- -------------------------------------------------------
 *        0    1 flags: WIRE_PIECE_FIRST (1) on the first piece of a
 *               frame, WIRE_PIECE_LAST (2) on the last, both on a frame
 *               of one piece; no other bits
 *        1    . up to WIRE_PART_BYTES bytes of the frame
 *
 * Small messages keep what a connection can make a node hold small:
 * ZeroMQ refuses any message above one piece (ZMQ_MAXMSGSIZE, set in
 * net/transport.c), CURVE handshake commands included, so nothing large
 * is spent before authentication; and ZeroMQ's queue limits count
 * messages, so a connection's queue holds at most so many pieces, not so
 * many frames of up to WIRE_MAX_FRAME.  A node joins the pieces of one
 * connection in order (ZeroMQ keeps a connection's messages in order and
 * never interleaves two frames of one sender) into a frame of the size
 * its first piece's header declares (wire_frame_size).
 *
 * A frame is a fixed 12-byte header followed by a body whose layout
 * depends on `kind`.  All
 * integers are little-endian and unaligned; there is no padding and no
 * struct is ever copied to the wire as is.
 *
 * Frame header (every frame):
 *
 *   offset size meaning
 *   ------ ---- -------------------------------------------------------
 *        0    4 magic, the bytes "PXFS" (u32 0x53465850)
 *        4    1 version, WIRE_VERSION (1)
 *        5    1 kind, enum wire_kind
 *        6    2 flags, must be 0 (reserved)
 *        8    4 body length in bytes; header + body <= WIRE_MAX_FRAME
 *       12    . body
 *
 * The body layouts (offsets relative to the body) are tabled in wire.c
 * next to the code that writes them.
 *
 * Decoding rules, all checked (DESIGN.md invariant 6: bad input is a clear
 * error, never a crash):
 *   -EPROTO    wrong magic, version, flags, an unknown kind, or a frame of
 *              another kind than the decoder called;
 *   -EMSGSIZE  a declared size or count above its limit (frame, entries,
 *              requests, entry data, request op, snapshot chunk, value);
 *   -EBADMSG   a truncated frame, a length that does not match what
 *              remains, trailing bytes, or a field value out of range (msg
 *              type, entry kind, snapshot `last`).
 * A decoder never reads outside [buf, buf + len), whatever the input.
 *
 * Encoding returns -EINVAL for a message that violates the same rules
 * (unknown type or kind, NULL data with non-zero length) and -EMSGSIZE for
 * one over a limit, so whatever encodes also decodes.
 *
 * Ownership: decoders never copy payload bytes.  Decoded pointers (entry
 * data, request op, snapshot bytes, client op/value) point into the
 * caller's buffer, which must outlive the decoded structure.  The only
 * allocation is the entries/requests arrays of a decoded PAXOS frame
 * (one malloc, none for a message without entries or requests), owned by
 * the wire_decoded and released by wire_decoded_free.
 */
#ifndef PAXOSFS_WIRE_H
#define PAXOSFS_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "../consensus/px.h"

#define WIRE_MAGIC 0x53465850u          /* "PXFS" as little-endian bytes */
#define WIRE_VERSION 2u
#define WIRE_HEADER_BYTES 12u

#define WIRE_MAX_FRAME LIMIT_FRAME      /* header + body */
#define WIRE_PART_BYTES LIMIT_WIRE_PART /* frame bytes in one piece */
#define WIRE_PIECE_FIRST 1u
#define WIRE_PIECE_LAST 2u
#define WIRE_MAX_ENTRIES 4096u          /* = the replica's own bound */
#define WIRE_MAX_REQUESTS 65536u        /* = the replica's own bound */
#define WIRE_MAX_ENTRY_BYTES PX_MAX_VALUE_BYTES
#define WIRE_MAX_OP_BYTES LIMIT_OP       /* a value + key room */
#define WIRE_MAX_CHUNK_BYTES LIMIT_SNAPSHOT_CHUNK /* one snapshot chunk */
#define WIRE_MAX_VALUE_BYTES LIMIT_OP    /* client reply value */

enum wire_kind {
    WIRE_PAXOS = 1,        /* a px_msg */
    WIRE_HELLO = 2,        /* first frame on a connection: who is speaking */
    WIRE_SNAPSHOT = 3,     /* one chunk of a snapshot transfer */
    WIRE_CLIENT_REQ = 4,   /* client-only mount -> node (reserved) */
    WIRE_CLIENT_REPLY = 5, /* node -> client-only mount (reserved) */
    WIRE_CHAIN_HEAD = 6,   /* a node's chain head, sent to every peer */
    WIRE_SNAPSHOT_ASK = 7, /* a receiver asks for bytes of a snapshot */
    WIRE_MOUNT_REQ = 8,    /* client-only mount -> node (net/wire_mount.h) */
    WIRE_MOUNT_MSG = 9,    /* node -> client-only mount (net/wire_mount.h) */
    WIRE_MEMBER = 10,      /* a membership change forwarded to the leader,
                              and its answer (node/members.c) */
    WIRE_KIND_COUNT
};

typedef struct wire_header {
    uint32_t magic;
    uint8_t version;
    uint8_t kind;          /* enum wire_kind */
    uint16_t flags;
    uint32_t body_len;
} wire_header;

/* Validate the header of the frame buf[0..len) and fill *h.  Checks magic,
 * version, flags, kind and that header + body_len is exactly len and at
 * most WIRE_MAX_FRAME.  It does not look into the body.  0 or a negative
 * errno as listed at the top. */
int wire_peek(const uint8_t *buf, size_t len, wire_header *h);

/* Check the header at the start of buf[0..len) (the first piece of a
 * frame: len may be less than the frame) and set *frame_len to the whole
 * frame's size.  The same checks as wire_peek except that the frame need
 * not be complete. */
int wire_frame_size(const uint8_t *buf, size_t len, size_t *frame_len);

/* ------------------------------------------------------------------ PAXOS */

/* A decoded PAXOS frame.  `msg` is ready for px_step: msg.entries and
 * msg.requests point into `arrays` (owned here), entry data and request
 * ops point into the decoded buffer.  Do not copy a wire_decoded by value
 * and free the copy; pass it by pointer. */
typedef struct wire_decoded {
    px_msg msg;
    void *arrays;          /* private: the one allocation, or NULL */
} wire_decoded;

/* Exact frame size of `m`, or 0 if `m` cannot be encoded (see
 * wire_encode_paxos_into for the reasons). */
size_t wire_paxos_size(const px_msg *m);

/* Encode `m` into buf[0..cap) without allocating; *out_len = frame size.
 * -EINVAL: m NULL, type or entry kind out of range, NULL arrays or bytes
 * with non-zero counts or lengths; -EMSGSIZE: a limit exceeded; -ENOSPC:
 * cap too small (nothing useful written). */
int wire_encode_paxos_into(const px_msg *m, uint8_t *buf, size_t cap,
                           size_t *out_len);

/* As wire_encode_paxos_into, into a fresh malloc'ed buffer the caller
 * frees with free().  -ENOMEM besides the above; *out untouched on error. */
int wire_encode_paxos(const px_msg *m, uint8_t **out, size_t *out_len);

/* Decode a whole PAXOS frame.  On success d owns its arrays (release with
 * wire_decoded_free) and points into buf.  On failure d is left empty (and
 * wire_decoded_free on it is harmless).  -ENOMEM besides the errors at the
 * top. */
int wire_decode_paxos(const uint8_t *buf, size_t len, wire_decoded *d);

/* Release what wire_decode_paxos allocated; d becomes empty.  NULL ok. */
void wire_decoded_free(wire_decoded *d);

/* ------------------------------------------------------------- CHAIN_HEAD */

/* A node's chain head (DESIGN.md invariant 3), sent to every member now
 * and then so that each node can compare its chain with all the others',
 * not only with the leader's.  Body: from u32, index u64, hash 32 bytes. */
typedef struct wire_chain_head {
    uint32_t from;
    uint64_t index;
    uint8_t hash[PX_HASH_BYTES];
} wire_chain_head;

int wire_encode_chain_head_into(const wire_chain_head *h, uint8_t *buf,
                                size_t cap, size_t *out_len);
int wire_decode_chain_head(const uint8_t *buf, size_t len, wire_chain_head *h);

/* ------------------------------------------------------------------ HELLO */

/* The first frame a node sends on a new connection: its id and the
 * cluster it believes it belongs to (a node from another cluster sharing
 * the key by mistake is recognised and dropped). */
typedef struct wire_hello {
    uint32_t node_id;
    uint64_t cluster_id;
} wire_hello;

size_t wire_hello_size(const wire_hello *h);
int wire_encode_hello_into(const wire_hello *h, uint8_t *buf, size_t cap,
                           size_t *out_len);
int wire_encode_hello(const wire_hello *h, uint8_t **out, size_t *out_len);
int wire_decode_hello(const uint8_t *buf, size_t len, wire_hello *h);

/* --------------------------------------------------------------- SNAPSHOT */

/* One chunk of a snapshot transfer: bytes [offset, offset + len) of a
 * snapshot of `total` bytes taken at chain index `index`.  `last` is 1 on
 * the chunk that ends the snapshot (then offset + len == total).  Decoding
 * checks offset + len <= total without overflow. */
typedef struct wire_snapshot {
    uint32_t from;
    uint32_t to;
    uint64_t index;
    uint64_t offset;
    uint64_t total;
    uint8_t last;          /* 0 or 1 */
    uint32_t len;          /* <= WIRE_MAX_CHUNK_BYTES */
    const uint8_t *data;   /* len bytes; decoded: points into the frame */
} wire_snapshot;

size_t wire_snapshot_size(const wire_snapshot *s);
int wire_encode_snapshot_into(const wire_snapshot *s, uint8_t *buf,
                              size_t cap, size_t *out_len);
int wire_encode_snapshot(const wire_snapshot *s, uint8_t **out,
                         size_t *out_len);
int wire_decode_snapshot(const uint8_t *buf, size_t len, wire_snapshot *s);

/* What a node installing a snapshot asks of the peer sending it: up to
 * `len` bytes from `offset` of the snapshot taken at `index` (0: the
 * sender's newest; the chunks say which index that is).  The receiver
 * drives the transfer, so at most what it asked for is ever in flight
 * (net/snapxfer.h).  Body: from u32, to u32, index u64, offset u64, len
 * u32 (1..WIRE_MAX_CHUNK_BYTES * WIRE_MAX_ASK_CHUNKS). */
#define WIRE_MAX_ASK_CHUNKS 16u
typedef struct wire_snapshot_ask {
    uint32_t from;
    uint32_t to;
    uint64_t index;
    uint64_t offset;
    uint32_t len;
} wire_snapshot_ask;

int wire_encode_snapshot_ask_into(const wire_snapshot_ask *a, uint8_t *buf,
                                  size_t cap, size_t *out_len);
int wire_decode_snapshot_ask(const uint8_t *buf, size_t len,
                             wire_snapshot_ask *a);

/* ----------------------------------------------------------------- MEMBER */

/* A membership change asked at a member that does not lead, forwarded to
 * the leader (answer 0), and the leader's answer (answer 1): `status` 0
 * or a negative errno, `text` the request ("add 4=HOST:PORT", "remove 4",
 * "promote 4") or the answer's words.  An announcement (answer 2): a
 * member tells a member it has not heard from that it is one, `token` the
 * block of the configuration it has in force, `text` its own address
 * ("ID=HOST:PORT"); the only frame a node takes from a sender it does not
 * know (node/members.c).  Body: from u32, to u32, token u64, answer u8
 * (0, 1 or 2), status i32, text_len u16 (<= WIRE_MAX_MEMBER_TEXT), text. */
#define WIRE_MAX_MEMBER_TEXT 512u
#define WIRE_MEMBER_ANNOUNCE 2u
typedef struct wire_member {
    uint32_t from;
    uint32_t to;
    uint64_t token;        /* the asker's tag, echoed in the answer */
    uint8_t answer;        /* 0 request, 1 answer, 2 announcement */
    int32_t status;
    uint16_t len;
    const char *text;      /* len bytes, not NUL-terminated; decoded:
                              points into the frame */
} wire_member;

int wire_encode_member_into(const wire_member *m, uint8_t *buf, size_t cap,
                            size_t *out_len);
int wire_decode_member(const uint8_t *buf, size_t len, wire_member *m);

/* ------------------------------------------------------ CLIENT_REQ/REPLY */

/* Reserved for client-only mounts: one operation, tagged for exactly-once
 * (DESIGN.md invariant 5), and its answer. */
typedef struct wire_client_req {
    uint64_t client_id;
    uint64_t seq;
    uint64_t ack_seq;      /* every seq below has been answered */
    uint32_t len;          /* <= WIRE_MAX_OP_BYTES */
    const uint8_t *op;     /* opaque operation (kv_op encoding) */
} wire_client_req;

typedef struct wire_client_reply {
    uint64_t client_id;
    uint64_t seq;
    int32_t status;        /* 0 or a negative errno */
    uint32_t leader_id;    /* hint when status says "ask the leader"; 0 */
    uint32_t len;          /* <= WIRE_MAX_VALUE_BYTES */
    const uint8_t *value;  /* result bytes (e.g. a value read) */
} wire_client_reply;

size_t wire_client_req_size(const wire_client_req *r);
int wire_encode_client_req_into(const wire_client_req *r, uint8_t *buf,
                                size_t cap, size_t *out_len);
int wire_encode_client_req(const wire_client_req *r, uint8_t **out,
                           size_t *out_len);
int wire_decode_client_req(const uint8_t *buf, size_t len,
                           wire_client_req *r);

size_t wire_client_reply_size(const wire_client_reply *r);
int wire_encode_client_reply_into(const wire_client_reply *r, uint8_t *buf,
                                  size_t cap, size_t *out_len);
int wire_encode_client_reply(const wire_client_reply *r, uint8_t **out,
                             size_t *out_len);
int wire_decode_client_reply(const uint8_t *buf, size_t len,
                             wire_client_reply *r);

/* A short name for an errno returned here ("bad magic/version/kind",
 * "over a limit", "malformed"), for drop counters and logs. */
const char *wire_strerror(int rc);

#endif /* PAXOSFS_WIRE_H */
