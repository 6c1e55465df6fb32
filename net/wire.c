/*
 * wire.c - owns the byte layout of every paxosfs frame (see wire.h for the
 * header table and the error rules).  Each body layout is tabled below
 * next to the code that writes and reads it, so the two cannot drift.
 *
 * Invariants:
 *   1. One place: every field is written by a put_* call in an encoder and
 *      read by a get_* call in the matching decoder, in table order.
 *   2. A decoder reads a byte only after checking that it lies inside the
 *      body; sizes are summed in 64 bits, so no count or length can wrap a
 *      bound check.
 *   3. Limits are checked before consistency, and both before any
 *      allocation: a small frame never makes the decoder allocate more
 *      than its own size times a small constant (the counts are checked
 *      against the bytes that remain before the arrays are allocated).
 *   4. Whatever an encoder accepts, the decoder accepts and decodes to the
 *      same fields (encoders check the decoder's rules first).
 *   5. No allocation per field: a PAXOS decode makes at most one malloc,
 *      an encode into a caller buffer none.
 */
#include "wire.h"

#include "../base/le.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------- little-endian I/O */

static inline void put_u8(uint8_t **p, uint8_t v)
{
    **p = v;
    *p += 1;
}

static inline void put_u16(uint8_t **p, uint16_t v)
{
    le_put16(*p, v);
    *p += 2;
}

static inline void put_u32(uint8_t **p, uint32_t v)
{
    le_put32(*p, v);
    *p += 4;
}

static inline void put_u64(uint8_t **p, uint64_t v)
{
    le_put64(*p, v);
    *p += 8;
}

static inline void put_bytes(uint8_t **p, const uint8_t *src, size_t n)
{
    if (n)
        memcpy(*p, src, n);
    *p += n;
}

/* Readers advance *p; the caller has checked that the bytes exist. */
static inline uint8_t get_u8(const uint8_t **p)
{
    uint8_t v = **p;
    *p += 1;
    return v;
}

static inline uint16_t get_u16(const uint8_t **p)
{
    uint16_t v = le_get16(*p);
    *p += 2;
    return v;
}

static inline uint32_t get_u32(const uint8_t **p)
{
    uint32_t v = le_get32(*p);
    *p += 4;
    return v;
}

static inline uint64_t get_u64(const uint8_t **p)
{
    uint64_t v = le_get64(*p);
    *p += 8;
    return v;
}

/* --------------------------------------------------------------- header */

static void put_header(uint8_t **p, uint8_t kind, uint32_t body_len)
{
    put_u32(p, WIRE_MAGIC);
    put_u8(p, WIRE_VERSION);
    put_u8(p, kind);
    put_u16(p, 0);
    put_u32(p, body_len);
}

/* The header checks of wire_peek, without the length match. */
static int wire_header_check(const uint8_t *buf, size_t len, wire_header *h)
{
    if (!buf || !h)
        return -EINVAL;
    if (len < WIRE_HEADER_BYTES)
        return -EBADMSG;
    const uint8_t *p = buf;
    wire_header w;
    w.magic = get_u32(&p);
    w.version = get_u8(&p);
    w.kind = get_u8(&p);
    w.flags = get_u16(&p);
    w.body_len = get_u32(&p);
    if (w.magic != WIRE_MAGIC || w.version != WIRE_VERSION || w.flags != 0 ||
        w.kind < WIRE_PAXOS || w.kind >= WIRE_KIND_COUNT)
        return -EPROTO;
    if (w.body_len > WIRE_MAX_FRAME - WIRE_HEADER_BYTES)
        return -EMSGSIZE;
    *h = w;
    return 0;
}

int wire_frame_size(const uint8_t *buf, size_t len, size_t *frame_len)
{
    wire_header h;
    int rc = wire_header_check(buf, len, &h);
    if (rc)
        return rc;
    if (frame_len)
        *frame_len = (size_t)h.body_len + WIRE_HEADER_BYTES;
    return 0;
}

int wire_peek(const uint8_t *buf, size_t len, wire_header *h)
{
    if (!h)
        return -EINVAL;
    wire_header w;
    int rc = wire_header_check(buf, len, &w);
    if (rc)
        return rc;
    if ((size_t)w.body_len + WIRE_HEADER_BYTES != len)
        return -EBADMSG;
    *h = w;
    return 0;
}

/* Validate a frame of `kind`; on success *body points at its body and
 * *body_len is its size. */
static int wire_open_body(const uint8_t *buf, size_t len, uint8_t kind,
                          const uint8_t **body, size_t *body_len)
{
    wire_header h;
    int rc = wire_peek(buf, len, &h);
    if (rc)
        return rc;
    if (h.kind != kind)
        return -EPROTO;
    *body = buf + WIRE_HEADER_BYTES;
    *body_len = h.body_len;
    return 0;
}

/* Common tail of every encoder: room check and header.  `frame` has been
 * checked against WIRE_MAX_FRAME already. */
static int wire_start(uint8_t *buf, size_t cap, size_t frame, uint8_t kind,
                      uint8_t **p)
{
    if (!buf || cap < frame)
        return -ENOSPC;
    *p = buf;
    put_header(p, kind, (uint32_t)(frame - WIRE_HEADER_BYTES));
    return 0;
}

/* An `_into` encoder with the message passed untyped, for wire_alloc. */
typedef int (*wire_into_fn)(const void *msg, uint8_t *buf, size_t cap,
                            size_t *out_len);

/* The malloc'ing encoders: allocate exactly `frame` bytes and encode into
 * them.  frame == 0 means the sizing function refused the message; the
 * `_into` encoder, given no buffer, reports the precise reason. */
static int wire_alloc(const void *msg, size_t frame, wire_into_fn into,
                      uint8_t **out, size_t *out_len)
{
    if (!out || !msg)
        return -EINVAL;
    if (frame == 0) {
        int rc = into(msg, NULL, 0, out_len);
        return rc ? rc : -EINVAL;
    }
    uint8_t *b = malloc(frame);
    if (!b)
        return -ENOMEM;
    int rc = into(msg, b, frame, out_len);
    if (rc) {
        free(b);
        return rc;
    }
    *out = b;
    return 0;
}

/* ---------------------------------------------------------------- PAXOS */

/*
 * PAXOS body, fixed part (WIRE_PAXOS_FIXED = 105 bytes):
 *
 *   offset size meaning
 *   ------ ---- ---------------------------------------------
 *        0    1 type (enum px_msg_type, 1 .. PX_MSG_TYPE_COUNT-1)
 *        1    4 from
 *        5    4 to
 *        9    8 ballot.round
 *       17    4 ballot.node_id
 *       21    8 slot
 *       29    8 commit
 *       37    8 aux
 *       45    8 aux_ballot.round
 *       53    4 aux_ballot.node_id
 *       57    8 chain_index
 *       65   32 chain_hash
 *       97    4 n_entries  (<= WIRE_MAX_ENTRIES)
 *      101    4 n_requests (<= WIRE_MAX_REQUESTS)
 *      105    . n_entries entries, then n_requests requests
 *
 * Entry (WIRE_ENTRY_FIXED = 33 bytes + len):
 *
 *        0    8 slot
 *        8    8 ballot.round
 *       16    4 ballot.node_id
 *       20    8 time_ms
 *       28    1 kind (enum px_entry_kind, <= PX_ENTRY_CONFIG)
 *       29    4 len (<= WIRE_MAX_ENTRY_BYTES)
 *       33  len data
 *
 * Request (WIRE_REQUEST_FIXED = 28 bytes + len):
 *
 *        0    8 client_id
 *        8    8 seq
 *       16    8 ack_seq
 *       24    4 len (<= WIRE_MAX_OP_BYTES)
 *       28  len op
 *
 * The body ends exactly after the last request.
 */
#define WIRE_PAXOS_FIXED 105u
#define WIRE_ENTRY_FIXED 33u
#define WIRE_REQUEST_FIXED 28u

/* Check `m` against the decoder's rules and compute its frame size. */
static int wire_paxos_measure(const px_msg *m, size_t *frame)
{
    if (!m || m->type < PX_MSG_PREPARE || m->type >= PX_MSG_TYPE_COUNT)
        return -EINVAL;
    if (m->n_entries > WIRE_MAX_ENTRIES || m->n_requests > WIRE_MAX_REQUESTS)
        return -EMSGSIZE;
    if ((m->n_entries && !m->entries) || (m->n_requests && !m->requests))
        return -EINVAL;
    uint64_t size = (uint64_t)WIRE_HEADER_BYTES + WIRE_PAXOS_FIXED +
                    (uint64_t)m->n_entries * WIRE_ENTRY_FIXED +
                    (uint64_t)m->n_requests * WIRE_REQUEST_FIXED;
    for (uint32_t i = 0; i < m->n_entries; i++) {
        const px_entry *e = &m->entries[i];
        if (e->kind > PX_ENTRY_CONFIG || (e->len && !e->data))
            return -EINVAL;
        if (e->len > WIRE_MAX_ENTRY_BYTES)
            return -EMSGSIZE;
        size += e->len;
    }
    for (uint32_t i = 0; i < m->n_requests; i++) {
        const px_request *q = &m->requests[i];
        if (q->len && !q->op)
            return -EINVAL;
        if (q->len > WIRE_MAX_OP_BYTES)
            return -EMSGSIZE;
        size += q->len;
    }
    if (size > WIRE_MAX_FRAME)
        return -EMSGSIZE;
    *frame = (size_t)size;
    return 0;
}

size_t wire_paxos_size(const px_msg *m)
{
    size_t frame = 0;
    return wire_paxos_measure(m, &frame) ? 0 : frame;
}

int wire_encode_paxos_into(const px_msg *m, uint8_t *buf, size_t cap,
                           size_t *out_len)
{
    size_t frame = 0;
    uint8_t *p;
    int rc = wire_paxos_measure(m, &frame);
    if (rc)
        return rc;
    rc = wire_start(buf, cap, frame, WIRE_PAXOS, &p);
    if (rc)
        return rc;
    put_u8(&p, m->type);
    put_u32(&p, m->from);
    put_u32(&p, m->to);
    put_u64(&p, m->ballot.round);
    put_u32(&p, m->ballot.node_id);
    put_u64(&p, m->slot);
    put_u64(&p, m->commit);
    put_u64(&p, m->aux);
    put_u64(&p, m->aux_ballot.round);
    put_u32(&p, m->aux_ballot.node_id);
    put_u64(&p, m->chain_index);
    put_bytes(&p, m->chain_hash, PX_HASH_BYTES);
    put_u32(&p, m->n_entries);
    put_u32(&p, m->n_requests);
    for (uint32_t i = 0; i < m->n_entries; i++) {
        const px_entry *e = &m->entries[i];
        put_u64(&p, e->slot);
        put_u64(&p, e->ballot.round);
        put_u32(&p, e->ballot.node_id);
        put_u64(&p, e->time_ms);
        put_u8(&p, e->kind);
        put_u32(&p, e->len);
        put_bytes(&p, e->data, e->len);
    }
    for (uint32_t i = 0; i < m->n_requests; i++) {
        const px_request *q = &m->requests[i];
        put_u64(&p, q->client_id);
        put_u64(&p, q->seq);
        put_u64(&p, q->ack_seq);
        put_u32(&p, q->len);
        put_bytes(&p, q->op, q->len);
    }
    if (out_len)
        *out_len = frame;
    return 0;
}

static int paxos_into(const void *m, uint8_t *buf, size_t cap, size_t *n)
{
    return wire_encode_paxos_into(m, buf, cap, n);
}

int wire_encode_paxos(const px_msg *m, uint8_t **out, size_t *out_len)
{
    size_t frame = 0;
    if (!out)
        return -EINVAL;
    int rc = wire_paxos_measure(m, &frame);
    if (rc)
        return rc;
    return wire_alloc(m, frame, paxos_into, out, out_len);
}

void wire_decoded_free(wire_decoded *d)
{
    if (!d)
        return;
    free(d->arrays);
    memset(d, 0, sizeof *d);
}

static size_t wire_align8(size_t n)
{
    return (n + 7u) & ~(size_t)7u;
}

static int wire_decode_entries(const uint8_t **p, size_t *left,
                               px_entry *ents, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        if (*left < WIRE_ENTRY_FIXED)
            return -EBADMSG;
        px_entry *e = &ents[i];
        e->slot = get_u64(p);
        e->ballot.round = get_u64(p);
        e->ballot.node_id = get_u32(p);
        e->time_ms = get_u64(p);
        e->kind = get_u8(p);
        e->len = get_u32(p);
        *left -= WIRE_ENTRY_FIXED;
        if (e->kind > PX_ENTRY_CONFIG)
            return -EBADMSG;
        if (e->len > WIRE_MAX_ENTRY_BYTES)
            return -EMSGSIZE;
        if (e->len > *left)
            return -EBADMSG;
        e->data = e->len ? *p : NULL;
        *p += e->len;
        *left -= e->len;
    }
    return 0;
}

static int wire_decode_requests(const uint8_t **p, size_t *left,
                                px_request *reqs, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        if (*left < WIRE_REQUEST_FIXED)
            return -EBADMSG;
        px_request *q = &reqs[i];
        q->client_id = get_u64(p);
        q->seq = get_u64(p);
        q->ack_seq = get_u64(p);
        q->len = get_u32(p);
        *left -= WIRE_REQUEST_FIXED;
        if (q->len > WIRE_MAX_OP_BYTES)
            return -EMSGSIZE;
        if (q->len > *left)
            return -EBADMSG;
        q->op = q->len ? *p : NULL;
        *p += q->len;
        *left -= q->len;
    }
    return 0;
}

int wire_decode_paxos(const uint8_t *buf, size_t len, wire_decoded *d)
{
    const uint8_t *p;
    size_t left;
    px_msg m;

    if (!d)
        return -EINVAL;
    memset(d, 0, sizeof *d);
    int rc = wire_open_body(buf, len, WIRE_PAXOS, &p, &left);
    if (rc)
        return rc;
    if (left < WIRE_PAXOS_FIXED)
        return -EBADMSG;
    memset(&m, 0, sizeof m);
    m.type = get_u8(&p);
    m.from = get_u32(&p);
    m.to = get_u32(&p);
    m.ballot.round = get_u64(&p);
    m.ballot.node_id = get_u32(&p);
    m.slot = get_u64(&p);
    m.commit = get_u64(&p);
    m.aux = get_u64(&p);
    m.aux_ballot.round = get_u64(&p);
    m.aux_ballot.node_id = get_u32(&p);
    m.chain_index = get_u64(&p);
    memcpy(m.chain_hash, p, PX_HASH_BYTES);
    p += PX_HASH_BYTES;
    m.n_entries = get_u32(&p);
    m.n_requests = get_u32(&p);
    left -= WIRE_PAXOS_FIXED;
    if (m.type < PX_MSG_PREPARE || m.type >= PX_MSG_TYPE_COUNT)
        return -EBADMSG;
    if (m.n_entries > WIRE_MAX_ENTRIES || m.n_requests > WIRE_MAX_REQUESTS)
        return -EMSGSIZE;
    /* invariant 3: the fixed parts alone must fit before we allocate */
    if ((uint64_t)m.n_entries * WIRE_ENTRY_FIXED +
            (uint64_t)m.n_requests * WIRE_REQUEST_FIXED > left)
        return -EBADMSG;

    void *arrays = NULL;
    px_entry *ents = NULL;
    px_request *reqs = NULL;
    if (m.n_entries || m.n_requests) {
        size_t ents_bytes = wire_align8((size_t)m.n_entries * sizeof *ents);
        arrays = malloc(ents_bytes + (size_t)m.n_requests * sizeof *reqs);
        if (!arrays)
            return -ENOMEM;
        ents = m.n_entries ? (px_entry *)arrays : NULL;
        reqs = m.n_requests
                   ? (px_request *)(void *)((uint8_t *)arrays + ents_bytes)
                   : NULL;
    }
    rc = wire_decode_entries(&p, &left, ents, m.n_entries);
    if (rc)
        goto free_arrays;
    rc = wire_decode_requests(&p, &left, reqs, m.n_requests);
    if (rc)
        goto free_arrays;
    if (left != 0) {
        rc = -EBADMSG;
        goto free_arrays;
    }
    m.entries = ents;
    m.requests = reqs;
    d->msg = m;
    d->arrays = arrays;
    return 0;
free_arrays:
    free(arrays);
    return rc;
}

/* ---------------------------------------------------------------- HELLO */

/*
 * HELLO body (12 bytes):
 *
 *   offset size meaning
 *        0    4 node_id
 *        4    8 cluster_id
 */
#define WIRE_HELLO_BODY 12u

size_t wire_hello_size(const wire_hello *h)
{
    return h ? WIRE_HEADER_BYTES + WIRE_HELLO_BODY : 0;
}

int wire_encode_hello_into(const wire_hello *h, uint8_t *buf, size_t cap,
                           size_t *out_len)
{
    uint8_t *p;
    if (!h)
        return -EINVAL;
    size_t frame = wire_hello_size(h);
    int rc = wire_start(buf, cap, frame, WIRE_HELLO, &p);
    if (rc)
        return rc;
    put_u32(&p, h->node_id);
    put_u64(&p, h->cluster_id);
    if (out_len)
        *out_len = frame;
    return 0;
}

static int hello_into(const void *h, uint8_t *buf, size_t cap, size_t *n)
{
    return wire_encode_hello_into(h, buf, cap, n);
}

int wire_encode_hello(const wire_hello *h, uint8_t **out, size_t *out_len)
{
    return wire_alloc(h, wire_hello_size(h), hello_into, out, out_len);
}

int wire_decode_hello(const uint8_t *buf, size_t len, wire_hello *h)
{
    const uint8_t *p;
    size_t left;
    if (!h)
        return -EINVAL;
    int rc = wire_open_body(buf, len, WIRE_HELLO, &p, &left);
    if (rc)
        return rc;
    if (left != WIRE_HELLO_BODY)
        return -EBADMSG;
    h->node_id = get_u32(&p);
    h->cluster_id = get_u64(&p);
    return 0;
}

/* ----------------------------------------------------------- CHAIN_HEAD */

/*
 * CHAIN_HEAD body (44 bytes):
 *
 *   offset size meaning
 *        0    4 from: the sending node's id
 *        4    8 index of its last chain block (0: empty chain)
 *       12   32 SHA-256 of that block (zeros for an empty chain)
 */
#define WIRE_CHAIN_HEAD_BODY (12u + PX_HASH_BYTES)

int wire_encode_chain_head_into(const wire_chain_head *h, uint8_t *buf,
                                size_t cap, size_t *out_len)
{
    uint8_t *p;
    if (!h)
        return -EINVAL;
    size_t frame = WIRE_HEADER_BYTES + WIRE_CHAIN_HEAD_BODY;
    int rc = wire_start(buf, cap, frame, WIRE_CHAIN_HEAD, &p);
    if (rc)
        return rc;
    put_u32(&p, h->from);
    put_u64(&p, h->index);
    put_bytes(&p, h->hash, PX_HASH_BYTES);
    if (out_len)
        *out_len = frame;
    return 0;
}

int wire_decode_chain_head(const uint8_t *buf, size_t len, wire_chain_head *h)
{
    const uint8_t *p;
    size_t left;
    if (!h)
        return -EINVAL;
    int rc = wire_open_body(buf, len, WIRE_CHAIN_HEAD, &p, &left);
    if (rc)
        return rc;
    if (left != WIRE_CHAIN_HEAD_BODY)
        return -EBADMSG;
    h->from = get_u32(&p);
    h->index = get_u64(&p);
    memcpy(h->hash, p, PX_HASH_BYTES);
    return 0;
}

/* ------------------------------------------------------------- SNAPSHOT */

/*
 * SNAPSHOT body (37 bytes + len):
 *
 *   offset size meaning
 *        0    4 from
 *        4    4 to
 *        8    8 index   (chain index the snapshot was taken at)
 *       16    8 offset  (of this chunk in the snapshot)
 *       24    8 total   (snapshot size; offset + len <= total)
 *       32    1 last    (0 or 1; 1 => offset + len == total)
 *       33    4 len     (<= WIRE_MAX_CHUNK_BYTES)
 *       37  len chunk bytes
 */
#define WIRE_SNAPSHOT_FIXED 37u

/* The rules the decoder applies to a chunk's fields, shared with the
 * encoder (invariant 4). */
static int wire_snapshot_check(const wire_snapshot *s)
{
    if (s->len > WIRE_MAX_CHUNK_BYTES)
        return -EMSGSIZE;
    if (s->last > 1 || s->offset > s->total || s->len > s->total - s->offset)
        return -EBADMSG;
    if (s->last && s->offset + s->len != s->total)
        return -EBADMSG;
    return 0;
}

size_t wire_snapshot_size(const wire_snapshot *s)
{
    if (!s || (s->len && !s->data) || wire_snapshot_check(s))
        return 0;
    return WIRE_HEADER_BYTES + WIRE_SNAPSHOT_FIXED + (size_t)s->len;
}

int wire_encode_snapshot_into(const wire_snapshot *s, uint8_t *buf,
                              size_t cap, size_t *out_len)
{
    uint8_t *p;
    if (!s || (s->len && !s->data))
        return -EINVAL;
    int rc = wire_snapshot_check(s);
    if (rc)
        return rc == -EBADMSG ? -EINVAL : rc;
    size_t frame = wire_snapshot_size(s);
    rc = wire_start(buf, cap, frame, WIRE_SNAPSHOT, &p);
    if (rc)
        return rc;
    put_u32(&p, s->from);
    put_u32(&p, s->to);
    put_u64(&p, s->index);
    put_u64(&p, s->offset);
    put_u64(&p, s->total);
    put_u8(&p, s->last);
    put_u32(&p, s->len);
    put_bytes(&p, s->data, s->len);
    if (out_len)
        *out_len = frame;
    return 0;
}

static int snapshot_into(const void *s, uint8_t *buf, size_t cap, size_t *n)
{
    return wire_encode_snapshot_into(s, buf, cap, n);
}

int wire_encode_snapshot(const wire_snapshot *s, uint8_t **out, size_t *out_len)
{
    return wire_alloc(s, s ? wire_snapshot_size(s) : 0, snapshot_into, out, out_len);
}

int wire_decode_snapshot(const uint8_t *buf, size_t len, wire_snapshot *s)
{
    const uint8_t *p;
    size_t left;
    wire_snapshot c;
    if (!s)
        return -EINVAL;
    int rc = wire_open_body(buf, len, WIRE_SNAPSHOT, &p, &left);
    if (rc)
        return rc;
    if (left < WIRE_SNAPSHOT_FIXED)
        return -EBADMSG;
    c.from = get_u32(&p);
    c.to = get_u32(&p);
    c.index = get_u64(&p);
    c.offset = get_u64(&p);
    c.total = get_u64(&p);
    c.last = get_u8(&p);
    c.len = get_u32(&p);
    left -= WIRE_SNAPSHOT_FIXED;
    if (c.len > WIRE_MAX_CHUNK_BYTES)
        return -EMSGSIZE;
    if (c.len != left)
        return -EBADMSG;
    rc = wire_snapshot_check(&c);
    if (rc)
        return rc;
    c.data = c.len ? p : NULL;
    *s = c;
    return 0;
}

/* ----------------------------------------------------- CLIENT_REQ/REPLY */

/*
 * CLIENT_REQ body (28 bytes + len):
 *
 *   offset size meaning
 *        0    8 client_id
 *        8    8 seq
 *       16    8 ack_seq
 *       24    4 len (<= WIRE_MAX_OP_BYTES)
 *       28  len op
 *
 * CLIENT_REPLY body (28 bytes + len):
 *
 *   offset size meaning
 *        0    8 client_id
 *        8    8 seq
 *       16    4 status (i32, two's complement)
 *       20    4 leader_id
 *       24    4 len (<= WIRE_MAX_VALUE_BYTES)
 *       28  len value
 */
#define WIRE_CLIENT_FIXED 28u

/* Both bodies share one shape: client_id, seq, 8 kind-specific bytes (a
 * u64, or two u32 in little-endian order, which is the same bytes as the
 * u64 lo | hi << 32), len, bytes.  One codec serves both kinds. */
typedef struct wire_client_body {
    uint64_t client_id, seq, mid;
    uint32_t len;
    const uint8_t *bytes;
} wire_client_body;

static size_t wire_client_size(const wire_client_body *c, uint32_t max_len)
{
    if ((c->len && !c->bytes) || c->len > max_len)
        return 0;
    return WIRE_HEADER_BYTES + WIRE_CLIENT_FIXED + (size_t)c->len;
}

static int wire_client_encode(const wire_client_body *c, uint8_t kind,
                              uint32_t max_len, uint8_t *buf, size_t cap,
                              size_t *out_len)
{
    uint8_t *p;
    if (c->len && !c->bytes)
        return -EINVAL;
    if (c->len > max_len)
        return -EMSGSIZE;
    size_t frame = wire_client_size(c, max_len);
    int rc = wire_start(buf, cap, frame, kind, &p);
    if (rc)
        return rc;
    put_u64(&p, c->client_id);
    put_u64(&p, c->seq);
    put_u64(&p, c->mid);
    put_u32(&p, c->len);
    put_bytes(&p, c->bytes, c->len);
    if (out_len)
        *out_len = frame;
    return 0;
}

static int wire_client_decode(const uint8_t *buf, size_t len, uint8_t kind,
                              uint32_t max_len, wire_client_body *c)
{
    const uint8_t *p;
    size_t left;
    int rc = wire_open_body(buf, len, kind, &p, &left);
    if (rc)
        return rc;
    if (left < WIRE_CLIENT_FIXED)
        return -EBADMSG;
    c->client_id = get_u64(&p);
    c->seq = get_u64(&p);
    c->mid = get_u64(&p);
    c->len = get_u32(&p);
    left -= WIRE_CLIENT_FIXED;
    if (c->len > max_len)
        return -EMSGSIZE;
    if (c->len != left)
        return -EBADMSG;
    c->bytes = c->len ? p : NULL;
    return 0;
}

static wire_client_body client_req_body(const wire_client_req *r)
{
    return (wire_client_body){ .client_id = r->client_id, .seq = r->seq,
                               .mid = r->ack_seq, .len = r->len,
                               .bytes = r->op };
}

static wire_client_body client_reply_body(const wire_client_reply *r)
{
    return (wire_client_body){
        .client_id = r->client_id, .seq = r->seq,
        .mid = (uint64_t)(uint32_t)r->status | (uint64_t)r->leader_id << 32,
        .len = r->len, .bytes = r->value };
}

size_t wire_client_req_size(const wire_client_req *r)
{
    if (!r)
        return 0;
    wire_client_body c = client_req_body(r);
    return wire_client_size(&c, WIRE_MAX_OP_BYTES);
}

int wire_encode_client_req_into(const wire_client_req *r, uint8_t *buf,
                                size_t cap, size_t *out_len)
{
    if (!r)
        return -EINVAL;
    wire_client_body c = client_req_body(r);
    return wire_client_encode(&c, WIRE_CLIENT_REQ, WIRE_MAX_OP_BYTES, buf,
                              cap, out_len);
}

static int client_req_into(const void *r, uint8_t *buf, size_t cap, size_t *n)
{
    return wire_encode_client_req_into(r, buf, cap, n);
}

int wire_encode_client_req(const wire_client_req *r, uint8_t **out, size_t *out_len)
{
    return wire_alloc(r, r ? wire_client_req_size(r) : 0, client_req_into, out, out_len);
}

int wire_decode_client_req(const uint8_t *buf, size_t len,
                           wire_client_req *r)
{
    wire_client_body c;
    if (!r)
        return -EINVAL;
    int rc = wire_client_decode(buf, len, WIRE_CLIENT_REQ, WIRE_MAX_OP_BYTES, &c);
    if (rc)
        return rc;
    *r = (wire_client_req){ .client_id = c.client_id, .seq = c.seq,
                            .ack_seq = c.mid, .len = c.len, .op = c.bytes };
    return 0;
}

size_t wire_client_reply_size(const wire_client_reply *r)
{
    if (!r)
        return 0;
    wire_client_body c = client_reply_body(r);
    return wire_client_size(&c, WIRE_MAX_VALUE_BYTES);
}

int wire_encode_client_reply_into(const wire_client_reply *r, uint8_t *buf,
                                  size_t cap, size_t *out_len)
{
    if (!r)
        return -EINVAL;
    wire_client_body c = client_reply_body(r);
    return wire_client_encode(&c, WIRE_CLIENT_REPLY, WIRE_MAX_VALUE_BYTES,
                              buf, cap, out_len);
}

static int client_reply_into(const void *r, uint8_t *buf, size_t cap, size_t *n)
{
    return wire_encode_client_reply_into(r, buf, cap, n);
}

int wire_encode_client_reply(const wire_client_reply *r, uint8_t **out, size_t *out_len)
{
    return wire_alloc(r, r ? wire_client_reply_size(r) : 0, client_reply_into, out, out_len);
}

int wire_decode_client_reply(const uint8_t *buf, size_t len,
                             wire_client_reply *r)
{
    wire_client_body c;
    if (!r)
        return -EINVAL;
    int rc = wire_client_decode(buf, len, WIRE_CLIENT_REPLY,
                                WIRE_MAX_VALUE_BYTES, &c);
    if (rc)
        return rc;
    uint32_t status = (uint32_t)c.mid;
    /* two's complement back to i32 without implementation-defined casts */
    *r = (wire_client_reply){
        .client_id = c.client_id, .seq = c.seq,
        .status = status <= INT32_MAX ? (int32_t)status
                                      : -(int32_t)(UINT32_MAX - status) - 1,
        .leader_id = (uint32_t)(c.mid >> 32), .len = c.len, .value = c.bytes };
    return 0;
}

const char *wire_strerror(int rc)
{
    switch (rc) {
    case 0:
        return "ok";
    case -EPROTO:
        return "not a paxosfs frame of this version or kind";
    case -EMSGSIZE:
        return "a size or count over its limit";
    case -EBADMSG:
        return "malformed frame (lengths or field values)";
    case -ENOMEM:
        return "out of memory";
    case -ENOSPC:
        return "buffer too small";
    case -EINVAL:
        return "invalid argument";
    default:
        return "unknown error";
    }
}
