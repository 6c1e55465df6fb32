/*
 * test_net_wire.c - the paxosfs wire format (net/wire.c): round trips of
 * every frame kind and every px_msg type, exact byte layout, limits, and
 * hostile input (every truncation, every header byte value, every body
 * byte flip, trailing bytes, forged counts and lengths).
 *
 * Decoding is canonical: a frame that decodes re-encodes to the same bytes,
 * which is what the mutation tests check when a mutant happens to decode.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../net/wire.h"
#include "../../net/wire_mount.h"

/* ------------------------------------------------------------- helpers */

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint64_t rng_next(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    rng_state = x;
    return x;
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int k = 0; k < 4; k++)
        p[k] = (uint8_t)(v >> (8 * k));
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

/* A message with every field set to something distinct. */
typedef struct sample {
    px_msg msg;
    px_entry entries[8];
    px_request requests[8];
    uint8_t bytes[8][64];
} sample;

static void sample_fill(sample *s, uint8_t type, uint32_t n_entries,
                        uint32_t n_requests)
{
    memset(s, 0, sizeof *s);
    px_msg *m = &s->msg;
    m->type = type;
    m->from = (uint32_t)rng_next();
    m->to = (uint32_t)rng_next();
    m->ballot.round = rng_next();
    m->ballot.node_id = (uint32_t)rng_next();
    m->slot = rng_next();
    m->commit = rng_next();
    m->aux = rng_next();
    m->aux_ballot.round = rng_next();
    m->aux_ballot.node_id = (uint32_t)rng_next();
    m->chain_index = rng_next();
    for (int i = 0; i < PX_HASH_BYTES; i++)
        m->chain_hash[i] = (uint8_t)rng_next();
    for (uint32_t i = 0; i < 8; i++)
        for (int j = 0; j < 64; j++)
            s->bytes[i][j] = (uint8_t)rng_next();
    for (uint32_t i = 0; i < n_entries; i++) {
        px_entry *e = &s->entries[i];
        e->slot = rng_next();
        e->ballot.round = rng_next();
        e->ballot.node_id = (uint32_t)rng_next();
        e->time_ms = rng_next();
        e->kind = (uint8_t)(i % 3);
        e->len = i == 0 ? 0 : (uint32_t)(rng_next() % 64);
        e->data = e->len ? s->bytes[i] : NULL;
    }
    for (uint32_t i = 0; i < n_requests; i++) {
        px_request *q = &s->requests[i];
        q->client_id = rng_next();
        q->seq = rng_next();
        q->ack_seq = rng_next();
        q->len = i == 1 ? 0 : (uint32_t)(rng_next() % 64);
        q->op = q->len ? s->bytes[7 - i] : NULL;
    }
    m->n_entries = n_entries;
    m->entries = n_entries ? s->entries : NULL;
    m->n_requests = n_requests;
    m->requests = n_requests ? s->requests : NULL;
}

static void assert_msg_equal(const px_msg *a, const px_msg *b)
{
    assert_int_equal(a->type, b->type);
    assert_int_equal(a->from, b->from);
    assert_int_equal(a->to, b->to);
    assert_true(a->ballot.round == b->ballot.round);
    assert_int_equal(a->ballot.node_id, b->ballot.node_id);
    assert_true(a->slot == b->slot);
    assert_true(a->commit == b->commit);
    assert_true(a->aux == b->aux);
    assert_true(a->aux_ballot.round == b->aux_ballot.round);
    assert_int_equal(a->aux_ballot.node_id, b->aux_ballot.node_id);
    assert_true(a->chain_index == b->chain_index);
    assert_memory_equal(a->chain_hash, b->chain_hash, PX_HASH_BYTES);
    assert_int_equal(a->n_entries, b->n_entries);
    assert_int_equal(a->n_requests, b->n_requests);
    for (uint32_t i = 0; i < a->n_entries; i++) {
        const px_entry *x = &a->entries[i], *y = &b->entries[i];
        assert_true(x->slot == y->slot);
        assert_true(x->ballot.round == y->ballot.round);
        assert_int_equal(x->ballot.node_id, y->ballot.node_id);
        assert_true(x->time_ms == y->time_ms);
        assert_int_equal(x->kind, y->kind);
        assert_int_equal(x->len, y->len);
        if (x->len)
            assert_memory_equal(x->data, y->data, x->len);
    }
    for (uint32_t i = 0; i < a->n_requests; i++) {
        const px_request *x = &a->requests[i], *y = &b->requests[i];
        assert_true(x->client_id == y->client_id);
        assert_true(x->seq == y->seq);
        assert_true(x->ack_seq == y->ack_seq);
        assert_int_equal(x->len, y->len);
        if (x->len)
            assert_memory_equal(x->op, y->op, x->len);
    }
}

/* Decode with the decoder the header names; if it decodes, re-encoding
 * must give the same bytes (canonical form).  Returns the decode rc. */
static int decode_any_canonical(const uint8_t *buf, size_t len)
{
    wire_header h;
    uint8_t *again = NULL;
    size_t again_len = 0;
    int rc = wire_peek(buf, len, &h);
    if (rc)
        return rc;
    switch (h.kind) {
    case WIRE_PAXOS: {
        wire_decoded d;
        rc = wire_decode_paxos(buf, len, &d);
        if (rc == 0) {
            assert_int_equal(wire_encode_paxos(&d.msg, &again, &again_len),
                             0);
            wire_decoded_free(&d);
        }
        break;
    }
    case WIRE_HELLO: {
        wire_hello x;
        rc = wire_decode_hello(buf, len, &x);
        if (rc == 0)
            assert_int_equal(wire_encode_hello(&x, &again, &again_len), 0);
        break;
    }
    case WIRE_SNAPSHOT: {
        wire_snapshot x;
        rc = wire_decode_snapshot(buf, len, &x);
        if (rc == 0)
            assert_int_equal(wire_encode_snapshot(&x, &again, &again_len),
                             0);
        break;
    }
    case WIRE_CLIENT_REQ: {
        wire_client_req x;
        rc = wire_decode_client_req(buf, len, &x);
        if (rc == 0)
            assert_int_equal(wire_encode_client_req(&x, &again, &again_len),
                             0);
        break;
    }
    case WIRE_CLIENT_REPLY: {
        wire_client_reply x;
        rc = wire_decode_client_reply(buf, len, &x);
        if (rc == 0)
            assert_int_equal(
                wire_encode_client_reply(&x, &again, &again_len), 0);
        break;
    }
    case WIRE_CHAIN_HEAD: {
        wire_chain_head x;
        rc = wire_decode_chain_head(buf, len, &x);
        if (rc == 0) {
            again = malloc(len + 64);
            assert_non_null(again);
            assert_int_equal(wire_encode_chain_head_into(&x, again, len + 64,
                                                         &again_len), 0);
        }
        break;
    }
    case WIRE_MEMBER: {
        wire_member x;
        rc = wire_decode_member(buf, len, &x);
        if (rc == 0) {
            again = malloc(len + 64);
            assert_non_null(again);
            assert_int_equal(wire_encode_member_into(&x, again, len + 64,
                                                     &again_len), 0);
        }
        break;
    }
    case WIRE_SNAPSHOT_ASK: {
        wire_snapshot_ask x;
        rc = wire_decode_snapshot_ask(buf, len, &x);
        if (rc == 0) {
            again = malloc(len + 64);
            assert_non_null(again);
            assert_int_equal(wire_encode_snapshot_ask_into(&x, again, len + 64,
                                                           &again_len), 0);
        }
        break;
    }
    case WIRE_MOUNT_REQ: {   /* net/wire_mount.h */
        wire_mount_req x;
        rc = wire_decode_mount_req(buf, len, &x);
        if (rc == 0) {
            again = malloc(len);
            assert_non_null(again);
            assert_int_equal(wire_encode_mount_req_into(&x, again, len,
                                                        &again_len), 0);
        }
        break;
    }
    case WIRE_MOUNT_MSG: {
        wire_mount_msg x;
        rc = wire_decode_mount_msg(buf, len, &x);
        if (rc == 0) {
            again = malloc(len);
            assert_non_null(again);
            assert_int_equal(wire_encode_mount_msg_into(&x, again, len,
                                                        &again_len), 0);
        }
        break;
    }
    default:
        fail_msg("wire_peek accepted kind %u", h.kind);
    }
    if (rc == 0) {
        assert_int_equal(again_len, len);
        assert_memory_equal(again, buf, len);
        free(again);
    }
    assert_true(rc == 0 || rc == -EPROTO || rc == -EMSGSIZE ||
                rc == -EBADMSG);
    return rc;
}

static uint8_t *encode_sample(const sample *s, size_t *len)
{
    uint8_t *buf = NULL;
    assert_int_equal(wire_encode_paxos(&s->msg, &buf, len), 0);
    assert_int_equal(*len, wire_paxos_size(&s->msg));
    return buf;
}

/* ---------------------------------------------------------- round trips */

static void test_paxos_every_type_round_trips(void **state)
{
    (void)state;
    static const uint32_t shapes[][2] = {{0, 0}, {1, 0}, {0, 1}, {8, 8},
                                         {3, 5}};
    for (uint8_t type = PX_MSG_PREPARE; type < PX_MSG_TYPE_COUNT; type++) {
        for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
            sample s;
            sample_fill(&s, type, shapes[k][0], shapes[k][1]);
            size_t len = 0;
            uint8_t *buf = encode_sample(&s, &len);
            wire_decoded d;
            assert_int_equal(wire_decode_paxos(buf, len, &d), 0);
            assert_msg_equal(&s.msg, &d.msg);
            /* zero copy: payloads point into the frame */
            for (uint32_t i = 0; i < d.msg.n_entries; i++)
                if (d.msg.entries[i].len)
                    assert_true(d.msg.entries[i].data > buf &&
                                d.msg.entries[i].data < buf + len);
                else
                    assert_null(d.msg.entries[i].data);
            if (d.msg.n_entries == 0)
                assert_null(d.msg.entries);
            if (d.msg.n_requests == 0)
                assert_null(d.msg.requests);
            if (!d.msg.n_entries && !d.msg.n_requests)
                assert_null(d.arrays);   /* no allocation at all */
            wire_decoded_free(&d);
            assert_null(d.arrays);
            wire_decoded_free(&d);       /* twice is harmless */
            free(buf);
        }
    }
}

static void test_paxos_encode_into_no_room(void **state)
{
    (void)state;
    sample s;
    sample_fill(&s, PX_MSG_ACCEPT, 2, 2);
    size_t need = wire_paxos_size(&s.msg);
    assert_true(need > WIRE_HEADER_BYTES);
    uint8_t *buf = malloc(need);
    assert_non_null(buf);
    size_t out = 0;
    assert_int_equal(wire_encode_paxos_into(&s.msg, buf, need - 1, &out),
                     -ENOSPC);
    assert_int_equal(wire_encode_paxos_into(&s.msg, buf, need, &out), 0);
    assert_int_equal(out, need);
    free(buf);
}

static void test_paxos_encode_refuses_bad_messages(void **state)
{
    (void)state;
    sample s;
    uint8_t *buf = NULL;
    size_t len = 0;
    sample_fill(&s, 0, 0, 0);
    assert_int_equal(wire_encode_paxos(&s.msg, &buf, &len), -EINVAL);
    assert_int_equal(wire_paxos_size(&s.msg), 0);
    s.msg.type = PX_MSG_TYPE_COUNT;
    assert_int_equal(wire_encode_paxos(&s.msg, &buf, &len), -EINVAL);

    sample_fill(&s, PX_MSG_ACCEPT, 2, 0);
    s.entries[1].kind = PX_ENTRY_LAST + 1;
    assert_int_equal(wire_encode_paxos(&s.msg, &buf, &len), -EINVAL);
    sample_fill(&s, PX_MSG_ACCEPT, 2, 0);
    s.entries[1].len = 5;
    s.entries[1].data = NULL;
    assert_int_equal(wire_encode_paxos(&s.msg, &buf, &len), -EINVAL);
    sample_fill(&s, PX_MSG_FORWARD, 0, 2);
    s.msg.requests = NULL;
    assert_int_equal(wire_encode_paxos(&s.msg, &buf, &len), -EINVAL);
    assert_int_equal(wire_encode_paxos(NULL, &buf, &len), -EINVAL);
    assert_null(buf);
}

/* ------------------------------------------------------- exact layout */

static void test_chain_head_round_trip_and_rejects(void **state)
{
    (void)state;
    wire_chain_head h = {.from = 3, .index = 0x0102030405060708u}, back;
    for (int i = 0; i < PX_HASH_BYTES; i++)
        h.hash[i] = (uint8_t)(i * 7 + 1);
    uint8_t buf[128];
    size_t len = 0;
    assert_int_equal(wire_encode_chain_head_into(&h, buf, sizeof buf, &len), 0);
    assert_int_equal(len, WIRE_HEADER_BYTES + 12 + PX_HASH_BYTES);
    assert_int_equal(wire_decode_chain_head(buf, len, &back), 0);
    assert_int_equal(back.from, 3);
    assert_true(back.index == h.index);
    assert_memory_equal(back.hash, h.hash, PX_HASH_BYTES);
    /* too small a buffer, every truncation, and the wrong decoder fail */
    assert_int_equal(wire_encode_chain_head_into(&h, buf, len - 1, &len), -ENOSPC);
    for (size_t cut = 0; cut < len; cut++)
        assert_true(wire_decode_chain_head(buf, cut, &back) < 0);
    wire_hello hello;
    assert_int_equal(wire_decode_hello(buf, len, &hello), -EPROTO);
}

/* A membership change forwarded to the leader and its answer. */
static void test_member_round_trip_and_rejects(void **state)
{
    (void)state;
    const char *text = "add 4=127.0.0.1:7004";
    wire_member m = {.from = 2, .to = 1, .token = 0x1122334455667788u,
                     .answer = 1, .status = -16,
                     .len = (uint16_t)strlen(text), .text = text}, back;
    uint8_t buf[WIRE_HEADER_BYTES + 23 + WIRE_MAX_MEMBER_TEXT + 1];
    size_t len = 0;
    assert_int_equal(wire_encode_member_into(&m, buf, sizeof buf, &len), 0);
    assert_int_equal(len, WIRE_HEADER_BYTES + 23 + strlen(text));
    assert_int_equal(wire_decode_member(buf, len, &back), 0);
    assert_int_equal(back.from, 2);
    assert_int_equal(back.to, 1);
    assert_true(back.token == m.token);
    assert_int_equal(back.answer, 1);
    assert_int_equal(back.status, -16);
    assert_int_equal(back.len, strlen(text));
    assert_memory_equal(back.text, text, back.len);
    for (size_t cut = 0; cut < len; cut++)
        assert_true(wire_decode_member(buf, cut, &back) < 0);
    /* answer must be 0, 1 or 2 (an announcement); the text length must
     * match what remains */
    buf[WIRE_HEADER_BYTES + 16] = 2;
    assert_int_equal(wire_decode_member(buf, len, &back), 0);
    assert_int_equal(back.answer, WIRE_MEMBER_ANNOUNCE);
    buf[WIRE_HEADER_BYTES + 16] = 3;
    assert_int_equal(wire_decode_member(buf, len, &back), -EBADMSG);
    buf[WIRE_HEADER_BYTES + 16] = 1;
    buf[WIRE_HEADER_BYTES + 21] = 3;
    assert_int_equal(wire_decode_member(buf, len, &back), -EBADMSG);
    /* over the text bound: refused both ways */
    m.len = WIRE_MAX_MEMBER_TEXT + 1;
    char big[WIRE_MAX_MEMBER_TEXT + 1];
    memset(big, 'x', sizeof big);
    m.text = big;
    assert_int_equal(wire_encode_member_into(&m, buf, sizeof buf, &len),
                     -EMSGSIZE);
    m.answer = 3;
    m.len = 1;
    assert_int_equal(wire_encode_member_into(&m, buf, sizeof buf, &len),
                     -EINVAL);
}

static void test_layout_is_pinned(void **state)
{
    (void)state;
    static const uint8_t hello_golden[] = {
        'P', 'X', 'F', 'S', WIRE_VERSION, WIRE_HELLO, 0, 0, 12, 0, 0, 0,
        0x07, 0x00, 0x00, 0x00, 0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02,
        0x01};
    wire_hello h = {.node_id = 7, .cluster_id = 0x0102030405060708u};
    uint8_t buf[64];
    size_t len = 0;
    assert_int_equal(wire_encode_hello_into(&h, buf, sizeof buf, &len), 0);
    assert_int_equal(len, sizeof hello_golden);
    assert_memory_equal(buf, hello_golden, len);

    /* PAXOS: a heartbeat with one request; spot-check table offsets */
    px_request q = {.client_id = 0x1111, .seq = 0x22, .ack_seq = 0x3,
                    .len = 2, .op = (const uint8_t *)"hi"};
    px_msg m = {.type = PX_MSG_HEARTBEAT, .from = 0xA1, .to = 0xB2,
                .ballot = {.round = 0x55, .node_id = 0xA1},
                .commit = 0x99, .lease_round = 0x77, .lease_ms = 0x66,
                .n_requests = 1, .requests = &q};
    m.chain_hash[0] = 0xEE;
    uint8_t frame[256];
    assert_int_equal(wire_encode_paxos_into(&m, frame, sizeof frame, &len),
                     0);
    assert_int_equal(len, 12 + 117 + 28 + 2);
    const uint8_t *b = frame + 12;
    assert_int_equal(get32(frame + 8), len - 12);
    assert_int_equal(b[0], PX_MSG_HEARTBEAT);
    assert_int_equal(get32(b + 1), 0xA1);
    assert_int_equal(get32(b + 5), 0xB2);
    assert_int_equal(b[9], 0x55);
    assert_int_equal(get32(b + 17), 0xA1);
    assert_int_equal(b[29], 0x99);
    assert_int_equal(b[65], 0xEE);
    assert_int_equal(b[97], 0x77);
    assert_int_equal(get32(b + 105), 0x66);
    assert_int_equal(get32(b + 109), 0);
    assert_int_equal(get32(b + 113), 1);
    assert_int_equal(b[117], 0x11);
    assert_int_equal(b[118], 0x11);
    assert_int_equal(b[125], 0x22);
    assert_int_equal(b[133], 0x03);
    assert_int_equal(get32(b + 141), 2);
    assert_memory_equal(b + 145, "hi", 2);
}

/* ------------------------------------------------------ hostile input */

static void test_every_truncation_rejected(void **state)
{
    (void)state;
    sample s;
    sample_fill(&s, PX_MSG_PROMISE, 4, 4);
    size_t len = 0;
    uint8_t *buf = encode_sample(&s, &len);
    uint8_t *cut = malloc(len);
    assert_non_null(cut);
    for (size_t n = 0; n < len; n++) {
        wire_decoded d;
        /* as received: header still claims the full body */
        memcpy(cut, buf, n);
        int rc = wire_decode_paxos(cut, n, &d);
        assert_int_equal(rc, -EBADMSG);
        assert_null(d.arrays);
        /* forged: header adjusted to the cut, so the body parser must
         * catch the missing bytes itself */
        if (n >= WIRE_HEADER_BYTES) {
            put32(cut + 8, (uint32_t)(n - WIRE_HEADER_BYTES));
            rc = wire_decode_paxos(cut, n, &d);
            assert_int_equal(rc, -EBADMSG);
            assert_null(d.arrays);
        }
    }
    free(cut);
    free(buf);
}

static void test_every_header_byte_value(void **state)
{
    (void)state;
    sample s;
    sample_fill(&s, PX_MSG_ACCEPT, 2, 2);
    size_t len = 0;
    uint8_t *buf = encode_sample(&s, &len);
    unsigned other_kinds_decoded = 0;
    for (size_t at = 0; at < WIRE_HEADER_BYTES; at++) {
        uint8_t orig = buf[at];
        for (unsigned v = 0; v < 256; v++) {
            if (v == orig)
                continue;
            buf[at] = (uint8_t)v;
            wire_decoded d;
            int rc = wire_decode_paxos(buf, len, &d);
            assert_true(rc == -EPROTO || rc == -EMSGSIZE || rc == -EBADMSG);
            if (at < 8)
                assert_int_equal(rc, -EPROTO);  /* magic/version/kind/flags */
            if (decode_any_canonical(buf, len) == 0)
                other_kinds_decoded++;
        }
        buf[at] = orig;
    }
    /* a PAXOS body is never a well-formed body of another kind here */
    assert_int_equal(other_kinds_decoded, 0);
    free(buf);
}

static void test_every_body_byte_flip(void **state)
{
    (void)state;
    sample s;
    sample_fill(&s, PX_MSG_CATCHUP, 5, 5);
    size_t len = 0;
    uint8_t *buf = encode_sample(&s, &len);
    unsigned decoded = 0, refused = 0;
    for (size_t at = WIRE_HEADER_BYTES; at < len; at++) {
        for (int bit = 0; bit < 8; bit++) {
            buf[at] ^= (uint8_t)(1u << bit);
            if (decode_any_canonical(buf, len) == 0)
                decoded++;
            else
                refused++;
            buf[at] ^= (uint8_t)(1u << bit);
        }
    }
    /* most flips land in values and still decode; length/count/type/kind
     * flips are refused */
    assert_true(decoded > 0);
    assert_true(refused > 0);
    free(buf);
}

static void test_trailing_bytes_rejected(void **state)
{
    (void)state;
    sample s;
    sample_fill(&s, PX_MSG_FORWARD, 0, 3);
    size_t len = 0;
    uint8_t *buf = encode_sample(&s, &len);
    uint8_t *longer = malloc(len + 1);
    assert_non_null(longer);
    memcpy(longer, buf, len);
    longer[len] = 0;
    wire_decoded d;
    wire_header h;
    assert_int_equal(wire_peek(longer, len + 1, &h), -EBADMSG);
    assert_int_equal(wire_decode_paxos(longer, len + 1, &d), -EBADMSG);
    put32(longer + 8, (uint32_t)(len + 1 - WIRE_HEADER_BYTES));
    assert_int_equal(wire_peek(longer, len + 1, &h), 0);
    assert_int_equal(wire_decode_paxos(longer, len + 1, &d), -EBADMSG);
    free(longer);
    free(buf);
}

/* Build a bare PAXOS frame body by hand: the fixed part with the given
 * counts, followed by `extra` zero bytes. */
static uint8_t *forge_paxos(uint8_t type, uint32_t n_entries,
                            uint32_t n_requests, size_t extra, size_t *len)
{
    size_t body = 117 + extra;
    uint8_t *f = calloc(1, 12 + body);
    assert_non_null(f);
    memcpy(f, "PXFS", 4);
    f[4] = WIRE_VERSION;
    f[5] = WIRE_PAXOS;
    put32(f + 8, (uint32_t)body);
    f[12] = type;
    put32(f + 12 + 109, n_entries);
    put32(f + 12 + 113, n_requests);
    *len = 12 + body;
    return f;
}

static void test_forged_counts_and_lengths(void **state)
{
    (void)state;
    wire_decoded d;
    size_t len;
    uint8_t *f;

    f = forge_paxos(PX_MSG_ACCEPT, WIRE_MAX_ENTRIES + 1, 0, 0, &len);
    assert_int_equal(wire_decode_paxos(f, len, &d), -EMSGSIZE);
    free(f);
    f = forge_paxos(PX_MSG_FORWARD, 0, WIRE_MAX_REQUESTS + 1, 0, &len);
    assert_int_equal(wire_decode_paxos(f, len, &d), -EMSGSIZE);
    free(f);
    f = forge_paxos(PX_MSG_FORWARD, 0, UINT32_MAX, 0, &len);
    assert_int_equal(wire_decode_paxos(f, len, &d), -EMSGSIZE);
    free(f);
    /* counts within limits but not backed by bytes: refused before any
     * allocation sized by them */
    f = forge_paxos(PX_MSG_ACCEPT, WIRE_MAX_ENTRIES, WIRE_MAX_REQUESTS, 64,
                    &len);
    assert_int_equal(wire_decode_paxos(f, len, &d), -EBADMSG);
    free(f);

    /* msg type out of range */
    f = forge_paxos(0, 0, 0, 0, &len);
    assert_int_equal(wire_decode_paxos(f, len, &d), -EBADMSG);
    f[12] = PX_MSG_TYPE_COUNT;
    assert_int_equal(wire_decode_paxos(f, len, &d), -EBADMSG);
    f[12] = PX_MSG_TYPE_COUNT - 1;
    assert_int_equal(wire_decode_paxos(f, len, &d), 0);
    wire_decoded_free(&d);
    free(f);

    /* one entry: kind out of range, data length over the limit, data
     * length past the end */
    f = forge_paxos(PX_MSG_ACCEPT, 1, 0, 33, &len);
    uint8_t *e = f + 12 + 117;
    assert_int_equal(wire_decode_paxos(f, len, &d), 0);
    wire_decoded_free(&d);
    e[28] = PX_ENTRY_LAST + 1;
    assert_int_equal(wire_decode_paxos(f, len, &d), -EBADMSG);
    e[28] = PX_ENTRY_BATCH;
    put32(e + 29, WIRE_MAX_ENTRY_BYTES + 1);
    assert_int_equal(wire_decode_paxos(f, len, &d), -EMSGSIZE);
    put32(e + 29, 1);
    assert_int_equal(wire_decode_paxos(f, len, &d), -EBADMSG);
    put32(e + 29, UINT32_MAX);
    assert_int_equal(wire_decode_paxos(f, len, &d), -EMSGSIZE);
    free(f);

    /* one request: op over the limit, op past the end */
    f = forge_paxos(PX_MSG_FORWARD, 0, 1, 28, &len);
    uint8_t *q = f + 12 + 117;
    assert_int_equal(wire_decode_paxos(f, len, &d), 0);
    wire_decoded_free(&d);
    put32(q + 24, WIRE_MAX_OP_BYTES + 1);
    assert_int_equal(wire_decode_paxos(f, len, &d), -EMSGSIZE);
    put32(q + 24, 3);
    assert_int_equal(wire_decode_paxos(f, len, &d), -EBADMSG);
    free(f);

    /* header: frame limit, flags, version, magic, kind, short buffer */
    f = forge_paxos(PX_MSG_PREPARE, 0, 0, 0, &len);
    wire_header h;
    assert_int_equal(wire_peek(f, len, &h), 0);
    assert_int_equal(h.kind, WIRE_PAXOS);
    assert_int_equal(h.body_len, 117);
    put32(f + 8, WIRE_MAX_FRAME - WIRE_HEADER_BYTES + 1);
    assert_int_equal(wire_peek(f, len, &h), -EMSGSIZE);
    put32(f + 8, 117);
    f[6] = 1;
    assert_int_equal(wire_peek(f, len, &h), -EPROTO);
    f[6] = 0;
    f[4] = WIRE_VERSION + 1;
    assert_int_equal(wire_peek(f, len, &h), -EPROTO);
    f[4] = WIRE_VERSION;
    f[5] = WIRE_KIND_COUNT;
    assert_int_equal(wire_peek(f, len, &h), -EPROTO);
    f[5] = 0;
    assert_int_equal(wire_peek(f, len, &h), -EPROTO);
    f[5] = WIRE_PAXOS;
    f[0] = 'p';
    assert_int_equal(wire_peek(f, len, &h), -EPROTO);
    f[0] = 'P';
    assert_int_equal(wire_peek(f, 11, &h), -EBADMSG);
    assert_int_equal(wire_peek(f, 0, &h), -EBADMSG);
    /* right frame, wrong decoder */
    wire_hello hello;
    wire_snapshot snap;
    assert_int_equal(wire_decode_hello(f, len, &hello), -EPROTO);
    assert_int_equal(wire_decode_snapshot(f, len, &snap), -EPROTO);
    free(f);
}

/* ----------------------------------------------------------- limits */

static void test_max_sizes(void **state)
{
    (void)state;
    uint8_t *big = malloc(WIRE_MAX_ENTRY_BYTES + 1);
    assert_non_null(big);
    for (size_t i = 0; i < WIRE_MAX_ENTRY_BYTES + 1; i += 4096)
        big[i] = (uint8_t)(i >> 12);

    /* one entry at the value limit, one request at the op limit */
    px_entry e = {.slot = 1, .kind = PX_ENTRY_BATCH,
                  .len = WIRE_MAX_ENTRY_BYTES, .data = big};
    px_request q = {.client_id = 1, .seq = 1, .len = WIRE_MAX_OP_BYTES,
                    .op = big};
    px_msg m = {.type = PX_MSG_ACCEPT, .n_entries = 1, .entries = &e,
                .n_requests = 1, .requests = &q};
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(wire_encode_paxos(&m, &buf, &len), 0);
    wire_decoded d;
    assert_int_equal(wire_decode_paxos(buf, len, &d), 0);
    assert_msg_equal(&m, &d.msg);
    wire_decoded_free(&d);
    free(buf);

    e.len = WIRE_MAX_ENTRY_BYTES + 1;
    assert_int_equal(wire_encode_paxos(&m, &buf, &len), -EMSGSIZE);
    e.len = WIRE_MAX_ENTRY_BYTES;
    q.len = WIRE_MAX_OP_BYTES + 1;
    assert_int_equal(wire_encode_paxos(&m, &buf, &len), -EMSGSIZE);

    /* nine entries at the value limit exceed the frame limit */
    px_entry *many = calloc(9, sizeof *many);
    assert_non_null(many);
    for (int i = 0; i < 9; i++)
        many[i] = (px_entry){.slot = (uint64_t)i + 1, .kind = 1,
                             .len = WIRE_MAX_ENTRY_BYTES, .data = big};
    px_msg huge = {.type = PX_MSG_CATCHUP, .n_entries = 9, .entries = many};
    assert_int_equal(wire_encode_paxos(&huge, &buf, &len), -EMSGSIZE);
    assert_int_equal(wire_paxos_size(&huge), 0);
    free(many);

    /* the maximum counts of small items */
    px_entry *ents = calloc(WIRE_MAX_ENTRIES + 1, sizeof *ents);
    px_request *reqs = calloc(WIRE_MAX_REQUESTS + 1, sizeof *reqs);
    assert_non_null(ents);
    assert_non_null(reqs);
    for (uint32_t i = 0; i <= WIRE_MAX_ENTRIES; i++)
        ents[i] = (px_entry){.slot = i + 1, .kind = PX_ENTRY_NOOP};
    for (uint32_t i = 0; i <= WIRE_MAX_REQUESTS; i++)
        reqs[i] = (px_request){.client_id = i, .seq = i + 1, .len = 1,
                               .op = big + (i % 1024)};
    px_msg lots = {.type = PX_MSG_ACCEPT, .n_entries = WIRE_MAX_ENTRIES,
                   .entries = ents, .n_requests = WIRE_MAX_REQUESTS,
                   .requests = reqs};
    assert_int_equal(wire_encode_paxos(&lots, &buf, &len), 0);
    assert_int_equal(wire_decode_paxos(buf, len, &d), 0);
    assert_msg_equal(&lots, &d.msg);
    wire_decoded_free(&d);
    free(buf);
    lots.n_entries++;
    assert_int_equal(wire_encode_paxos(&lots, &buf, &len), -EMSGSIZE);
    lots.n_entries--;
    lots.n_requests++;
    assert_int_equal(wire_encode_paxos(&lots, &buf, &len), -EMSGSIZE);
    free(reqs);
    free(ents);
    free(big);
}

/* ----------------------------------------------------- other kinds */

static void test_hello_round_trip(void **state)
{
    (void)state;
    wire_hello h = {.node_id = 0xFFFFFFFFu, .cluster_id = UINT64_MAX - 5};
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(wire_encode_hello(&h, &buf, &len), 0);
    assert_int_equal(len, wire_hello_size(&h));
    wire_hello back;
    assert_int_equal(wire_decode_hello(buf, len, &back), 0);
    assert_int_equal(back.node_id, h.node_id);
    assert_true(back.cluster_id == h.cluster_id);
    for (size_t n = 0; n < len; n++)
        assert_int_not_equal(wire_decode_hello(buf, n, &back), 0);
    assert_int_equal(wire_encode_hello_into(&h, buf, len - 1, &len),
                     -ENOSPC);
    free(buf);
}

/* SNAPSHOT_ASK: round trip; a length of 0 or beyond the ask bound, an
 * offset that overflows, a cut or padded body are refused. */
static void test_snapshot_ask(void **state)
{
    (void)state;
    uint8_t buf[128];
    size_t len;
    wire_snapshot_ask a = { .from = 2, .to = 1, .index = 77, .offset = 4096,
                            .len = 1u << 20 }, d;
    assert_int_equal(wire_encode_snapshot_ask_into(&a, buf, sizeof buf, &len),
                     0);
    assert_int_equal(len, WIRE_HEADER_BYTES + 28);
    assert_int_equal(wire_decode_snapshot_ask(buf, len, &d), 0);
    assert_int_equal(d.from, 2);
    assert_int_equal(d.to, 1);
    assert_int_equal(d.index, 77);
    assert_int_equal(d.offset, 4096);
    assert_int_equal(d.len, 1u << 20);
    assert_int_equal(wire_decode_snapshot_ask(buf, len - 1, &d), -EBADMSG);
    wire_snapshot s;
    assert_int_equal(wire_decode_snapshot(buf, len, &s), -EPROTO);
    /* fields out of range, written by hand into a valid frame */
    buf[WIRE_HEADER_BYTES + 24] = 0;
    buf[WIRE_HEADER_BYTES + 25] = 0;
    buf[WIRE_HEADER_BYTES + 26] = 0;
    buf[WIRE_HEADER_BYTES + 27] = 0;
    assert_int_equal(wire_decode_snapshot_ask(buf, len, &d), -EBADMSG);
    memset(buf + WIRE_HEADER_BYTES + 24, 0xff, 4);
    assert_int_equal(wire_decode_snapshot_ask(buf, len, &d), -EMSGSIZE);
    a.len = 0;
    assert_int_equal(wire_encode_snapshot_ask_into(&a, buf, sizeof buf, &len),
                     -EINVAL);
    a.len = 10;
    a.offset = UINT64_MAX - 5;
    assert_int_equal(wire_encode_snapshot_ask_into(&a, buf, sizeof buf, &len),
                     -EINVAL);
    a.offset = 0;
    a.len = WIRE_MAX_CHUNK_BYTES * WIRE_MAX_ASK_CHUNKS + 1u;
    assert_int_equal(wire_encode_snapshot_ask_into(&a, buf, sizeof buf, &len),
                     -EMSGSIZE);
}

static void test_snapshot_round_trip_and_checks(void **state)
{
    (void)state;
    uint8_t chunk[300];
    for (size_t i = 0; i < sizeof chunk; i++)
        chunk[i] = (uint8_t)(i * 7);
    wire_snapshot s = {.from = 1, .to = 3, .index = 77, .offset = 1000,
                       .total = 1300, .last = 1, .len = 300, .data = chunk};
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(wire_encode_snapshot(&s, &buf, &len), 0);
    wire_snapshot back;
    assert_int_equal(wire_decode_snapshot(buf, len, &back), 0);
    assert_int_equal(back.from, 1);
    assert_int_equal(back.to, 3);
    assert_true(back.index == 77 && back.offset == 1000 &&
                back.total == 1300 && back.last == 1 && back.len == 300);
    assert_ptr_equal(back.data, buf + 12 + 37);
    assert_memory_equal(back.data, chunk, 300);
    for (size_t n = 0; n < len; n++)
        assert_int_not_equal(wire_decode_snapshot(buf, n, &back), 0);
    free(buf);

    /* empty first chunk of an empty snapshot */
    wire_snapshot empty = {.from = 2, .to = 1, .last = 1};
    assert_int_equal(wire_encode_snapshot(&empty, &buf, &len), 0);
    assert_int_equal(wire_decode_snapshot(buf, len, &back), 0);
    assert_null(back.data);
    assert_int_equal(back.len, 0);
    /* forged: last = 2; then total below offset + len */
    uint8_t *b = buf + 12;
    b[32] = 2;
    assert_int_equal(wire_decode_snapshot(buf, len, &back), -EBADMSG);
    b[32] = 0;
    assert_int_equal(wire_decode_snapshot(buf, len, &back), 0);
    b[16] = 1;   /* offset 1 > total 0 */
    assert_int_equal(wire_decode_snapshot(buf, len, &back), -EBADMSG);
    free(buf);

    /* encoder refuses what the decoder would */
    s.total = 1299;
    assert_int_equal(wire_encode_snapshot(&s, &buf, &len), -EINVAL);
    s.total = 1400;   /* last chunk must end the snapshot */
    assert_int_equal(wire_encode_snapshot(&s, &buf, &len), -EINVAL);
    s.last = 0;
    assert_int_equal(wire_encode_snapshot(&s, &buf, &len), 0);
    free(buf);
    s.offset = UINT64_MAX - 10;   /* no wrap-around */
    s.total = UINT64_MAX;
    assert_int_equal(wire_encode_snapshot(&s, &buf, &len), -EINVAL);
    s.offset = 0;
    s.total = (uint64_t)WIRE_MAX_CHUNK_BYTES * 2;
    s.len = WIRE_MAX_CHUNK_BYTES + 1;
    assert_int_equal(wire_encode_snapshot(&s, &buf, &len), -EMSGSIZE);
}

static void test_client_frames_round_trip(void **state)
{
    (void)state;
    static const uint8_t op[] = "put key value";
    wire_client_req r = {.client_id = 42, .seq = 7, .ack_seq = 5,
                         .len = sizeof op, .op = op};
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(wire_encode_client_req(&r, &buf, &len), 0);
    wire_client_req rb;
    assert_int_equal(wire_decode_client_req(buf, len, &rb), 0);
    assert_true(rb.client_id == 42 && rb.seq == 7 && rb.ack_seq == 5);
    assert_int_equal(rb.len, sizeof op);
    assert_memory_equal(rb.op, op, sizeof op);
    for (size_t n = 0; n < len; n++)
        assert_int_not_equal(wire_decode_client_req(buf, n, &rb), 0);
    wire_client_reply rp;
    assert_int_equal(wire_decode_client_reply(buf, len, &rp), -EPROTO);
    put32(buf + 12 + 24, WIRE_MAX_OP_BYTES + 1);
    assert_int_equal(wire_decode_client_req(buf, len, &rb), -EMSGSIZE);
    free(buf);

    for (int k = 0; k < 4; k++) {
        static const int32_t statuses[] = {0, -EAGAIN, INT32_MIN, INT32_MAX};
        wire_client_reply p = {.client_id = 9, .seq = 3,
                               .status = statuses[k], .leader_id = 2,
                               .len = k == 0 ? 0 : 5,
                               .value = k == 0 ? NULL : op};
        assert_int_equal(wire_encode_client_reply(&p, &buf, &len), 0);
        assert_int_equal(wire_decode_client_reply(buf, len, &rp), 0);
        assert_int_equal(rp.status, statuses[k]);
        assert_int_equal(rp.leader_id, 2);
        assert_int_equal(rp.len, p.len);
        if (p.len)
            assert_memory_equal(rp.value, op, p.len);
        else
            assert_null(rp.value);
        for (size_t n = 0; n < len; n++)
            assert_int_not_equal(wire_decode_client_reply(buf, n, &rp), 0);
        free(buf);
    }
    wire_client_reply big = {.len = WIRE_MAX_VALUE_BYTES + 1, .value = op};
    assert_int_equal(wire_encode_client_reply(&big, &buf, &len), -EMSGSIZE);
    wire_client_req bad = {.len = 3, .op = NULL};
    assert_int_equal(wire_encode_client_req(&bad, &buf, &len), -EINVAL);
}

static void test_random_garbage_never_crashes(void **state)
{
    (void)state;
    /* valid header, random body: exercised under ASan/UBSan */
    uint8_t buf[512];
    unsigned decoded = 0;
    for (int round = 0; round < 20000; round++) {
        size_t body = (size_t)(rng_next() % (sizeof buf - 12));
        memcpy(buf, "PXFS", 4);
        buf[4] = WIRE_VERSION;
        buf[5] = (uint8_t)(1 + rng_next() % 5);
        buf[6] = buf[7] = 0;
        put32(buf + 8, (uint32_t)body);
        for (size_t i = 0; i < body; i++)
            buf[12 + i] = (uint8_t)(rng_next() & rng_next());
        if (decode_any_canonical(buf, 12 + body) == 0)
            decoded++;
    }
    assert_true(decoded > 0);  /* some hellos at least */
}

/* ------------------------------------------------------------ speed */

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void test_speed_100_requests(void **state)
{
    (void)state;
    px_request reqs[100];
    uint8_t op[40];
    memset(op, 'x', sizeof op);
    for (int i = 0; i < 100; i++)
        reqs[i] = (px_request){.client_id = 1, .seq = (uint64_t)i + 1,
                               .len = sizeof op, .op = op};
    px_msg m = {.type = PX_MSG_FORWARD, .from = 1, .to = 2,
                .n_requests = 100, .requests = reqs};
    size_t cap = wire_paxos_size(&m);
    uint8_t *buf = malloc(cap);
    assert_non_null(buf);
    size_t len = 0;
    enum { ROUNDS = 20000 };
    int failures = 0;
    double t0 = now_ns();
    for (int i = 0; i < ROUNDS; i++)
        failures += wire_encode_paxos_into(&m, buf, cap, &len) != 0;
    double t1 = now_ns();
    for (int i = 0; i < ROUNDS; i++) {
        wire_decoded d;
        failures += wire_decode_paxos(buf, len, &d) != 0;
        failures += d.msg.n_requests != 100;
        wire_decoded_free(&d);
    }
    double t2 = now_ns();
    assert_int_equal(failures, 0);
    double enc_us = (t1 - t0) / ROUNDS / 1e3, dec_us = (t2 - t1) / ROUNDS / 1e3;
    print_message("wire: 100 requests x 40 B (%zu B frame): encode %.2f us, "
                  "decode %.2f us\n", len, enc_us, dec_us);
    /* very loose: this only trips on an accidental quadratic or a
     * per-field allocation gone mad, not on a noisy machine */
    assert_true(enc_us < 500.0);
    assert_true(dec_us < 500.0);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_paxos_every_type_round_trips),
        cmocka_unit_test(test_paxos_encode_into_no_room),
        cmocka_unit_test(test_paxos_encode_refuses_bad_messages),
        cmocka_unit_test(test_chain_head_round_trip_and_rejects),
        cmocka_unit_test(test_member_round_trip_and_rejects),
        cmocka_unit_test(test_layout_is_pinned),
        cmocka_unit_test(test_every_truncation_rejected),
        cmocka_unit_test(test_every_header_byte_value),
        cmocka_unit_test(test_every_body_byte_flip),
        cmocka_unit_test(test_trailing_bytes_rejected),
        cmocka_unit_test(test_forged_counts_and_lengths),
        cmocka_unit_test(test_max_sizes),
        cmocka_unit_test(test_hello_round_trip),
        cmocka_unit_test(test_snapshot_round_trip_and_checks),
        cmocka_unit_test(test_snapshot_ask),
        cmocka_unit_test(test_client_frames_round_trip),
        cmocka_unit_test(test_random_garbage_never_crashes),
        cmocka_unit_test(test_speed_100_requests),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
