/*
 * wire_frames.c - owns the byte layout of the frames other than PAXOS:
 * HELLO, CHAIN_HEAD, SNAPSHOT, SNAPSHOT_ASK, CLIENT_REQ and CLIENT_REPLY (wire.c has the
 * header, the PAXOS frames and the invariants both files keep).
 */
#include "wire_int.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

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

/* ---------------------------------------------------------- SNAPSHOT_ASK */

/*
 * SNAPSHOT_ASK body (28 bytes):
 *
 *   offset size meaning
 *        0    4 from
 *        4    4 to
 *        8    8 index  (0: the sender's newest snapshot)
 *       16    8 offset (first byte wanted)
 *       24    4 len    (bytes wanted, 1..WIRE_MAX_CHUNK_BYTES *
 *                       WIRE_MAX_ASK_CHUNKS)
 */
#define WIRE_SNAPSHOT_ASK_BODY 28u

static int wire_ask_check(const wire_snapshot_ask *a)
{
    if ((uint64_t)a->len > (uint64_t)WIRE_MAX_CHUNK_BYTES * WIRE_MAX_ASK_CHUNKS)
        return -EMSGSIZE;
    if (a->len == 0 || a->offset > UINT64_MAX - a->len)
        return -EBADMSG;
    return 0;
}

int wire_encode_snapshot_ask_into(const wire_snapshot_ask *a, uint8_t *buf,
                                  size_t cap, size_t *out_len)
{
    uint8_t *p;
    if (!a)
        return -EINVAL;
    int rc = wire_ask_check(a);
    if (rc)
        return rc == -EBADMSG ? -EINVAL : rc;
    size_t frame = WIRE_HEADER_BYTES + WIRE_SNAPSHOT_ASK_BODY;
    rc = wire_start(buf, cap, frame, WIRE_SNAPSHOT_ASK, &p);
    if (rc)
        return rc;
    put_u32(&p, a->from);
    put_u32(&p, a->to);
    put_u64(&p, a->index);
    put_u64(&p, a->offset);
    put_u32(&p, a->len);
    if (out_len)
        *out_len = frame;
    return 0;
}

int wire_decode_snapshot_ask(const uint8_t *buf, size_t len,
                             wire_snapshot_ask *a)
{
    const uint8_t *p;
    size_t left;
    if (!a)
        return -EINVAL;
    int rc = wire_open_body(buf, len, WIRE_SNAPSHOT_ASK, &p, &left);
    if (rc)
        return rc;
    if (left != WIRE_SNAPSHOT_ASK_BODY)
        return -EBADMSG;
    wire_snapshot_ask c;
    c.from = get_u32(&p);
    c.to = get_u32(&p);
    c.index = get_u64(&p);
    c.offset = get_u64(&p);
    c.len = get_u32(&p);
    rc = wire_ask_check(&c);
    if (rc)
        return rc;
    *a = c;
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


/* --------------------------------------------------------------- MEMBER */

/*
 * MEMBER body (23 bytes + len):
 *
 *   offset size meaning
 *        0    4 from
 *        4    4 to
 *        8    8 token   (the asker's tag, echoed in the answer)
 *       16    1 answer  (0 a request, 1 its answer, 2 an announcement)
 *       17    4 status  (i32: 0 or a negative errno; 0 in a request)
 *       21    2 len     (<= WIRE_MAX_MEMBER_TEXT)
 *       23  len text    (the request or the answer's words)
 */
#define WIRE_MEMBER_BODY 23u

int wire_encode_member_into(const wire_member *m, uint8_t *buf, size_t cap,
                            size_t *out_len)
{
    uint8_t *p;
    if (!m || m->answer > WIRE_MEMBER_ANNOUNCE || (m->len && !m->text))
        return -EINVAL;
    if (m->len > WIRE_MAX_MEMBER_TEXT)
        return -EMSGSIZE;
    size_t frame = WIRE_HEADER_BYTES + WIRE_MEMBER_BODY + m->len;
    int rc = wire_start(buf, cap, frame, WIRE_MEMBER, &p);
    if (rc)
        return rc;
    put_u32(&p, m->from);
    put_u32(&p, m->to);
    put_u64(&p, m->token);
    put_u8(&p, m->answer);
    put_u32(&p, (uint32_t)m->status);
    put_u16(&p, m->len);
    put_bytes(&p, (const uint8_t *)m->text, m->len);
    if (out_len)
        *out_len = frame;
    return 0;
}

int wire_decode_member(const uint8_t *buf, size_t len, wire_member *m)
{
    const uint8_t *p;
    size_t left;
    if (!m)
        return -EINVAL;
    int rc = wire_open_body(buf, len, WIRE_MEMBER, &p, &left);
    if (rc)
        return rc;
    if (left < WIRE_MEMBER_BODY)
        return -EBADMSG;
    m->from = get_u32(&p);
    m->to = get_u32(&p);
    m->token = get_u64(&p);
    m->answer = get_u8(&p);
    m->status = (int32_t)get_u32(&p);
    m->len = get_u16(&p);
    if (m->len > WIRE_MAX_MEMBER_TEXT)
        return -EMSGSIZE;
    if (m->answer > WIRE_MEMBER_ANNOUNCE || left - WIRE_MEMBER_BODY != m->len)
        return -EBADMSG;
    m->text = (const char *)p;
    return 0;
}
