/*
 * wire.c - owns the frame header and the PAXOS frames (see wire.h for the
 * header table and the error rules; wire_frames.c has the other kinds).  Each body layout is tabled below
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
#include "wire_int.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* --------------------------------------------------------------- header */

void wire_put_header(uint8_t **p, uint8_t kind, uint32_t body_len)
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
int wire_open_body(const uint8_t *buf, size_t len, uint8_t kind,
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
int wire_start(uint8_t *buf, size_t cap, size_t frame, uint8_t kind,
                      uint8_t **p)
{
    if (!buf || cap < frame)
        return -ENOSPC;
    *p = buf;
    wire_put_header(p, kind, (uint32_t)(frame - WIRE_HEADER_BYTES));
    return 0;
}

/* The malloc'ing encoders: allocate exactly `frame` bytes and encode into
 * them.  frame == 0 means the sizing function refused the message; the
 * `_into` encoder, given no buffer, reports the precise reason. */
int wire_alloc(const void *msg, size_t frame, wire_into_fn into,
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
 * PAXOS body, fixed part (WIRE_PAXOS_FIXED = 117 bytes):
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
 *       97    8 lease_round
 *      105    4 lease_ms
 *      109    4 n_entries  (<= WIRE_MAX_ENTRIES)
 *      113    4 n_requests (<= WIRE_MAX_REQUESTS)
 *      117    . n_entries entries, then n_requests requests
 *
 * Entry (WIRE_ENTRY_FIXED = 33 bytes + len):
 *
 *        0    8 slot
 *        8    8 ballot.round
 *       16    4 ballot.node_id
 *       20    8 time_ms
 *       28    1 kind (enum px_entry_kind, <= PX_ENTRY_LAST)
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
#define WIRE_PAXOS_FIXED 117u
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
        if (e->kind > PX_ENTRY_LAST || (e->len && !e->data))
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
    put_u64(&p, m->lease_round);
    put_u32(&p, m->lease_ms);
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
        if (e->kind > PX_ENTRY_LAST)
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
    m.lease_round = get_u64(&p);
    m.lease_ms = get_u32(&p);
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
