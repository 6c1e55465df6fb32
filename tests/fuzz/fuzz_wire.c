/*
 * fuzz_wire.c - libFuzzer target for the paxosfs wire format (net/wire.c).
 * `make fuzz` builds it with clang -fsanitize=fuzzer,address,undefined.
 *
 * Each input is used three ways:
 *   1. raw: wire_peek and every decoder on the input as it is;
 *   2. framed: the input as the body of a correct header of every kind,
 *      so the body parsers are reached without guessing the magic;
 *   3. generated: the input drives the fields of a px_msg, which is
 *      encoded, decoded and compared field by field.
 *
 * Properties checked (a violation traps, which libFuzzer reports):
 *   P1. no decoder reads outside its input (ASan; the inputs are exact-size
 *       heap copies), no undefined behaviour (UBSan);
 *   P2. a decoder fails only with -EPROTO, -EMSGSIZE or -EBADMSG;
 *   P3. whatever decodes re-encodes to the same bytes (canonical format),
 *       and a re-encoded PAXOS frame decodes to the same fields;
 *   P4. whatever the encoder accepts decodes to the same fields.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../net/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                           \
    do {                                                                      \
        if (!(cond))                                                          \
            __builtin_trap();                                                 \
    } while (0)

static void check_error(int rc)
{
    CHECK(rc == 0 || rc == -EPROTO || rc == -EMSGSIZE || rc == -EBADMSG);
}

static void check_same_bytes(const uint8_t *a, size_t a_len,
                             const uint8_t *b, size_t b_len)
{
    CHECK(a_len == b_len);
    CHECK(memcmp(a, b, a_len) == 0);
}

static void check_same_msg(const px_msg *a, const px_msg *b)
{
    CHECK(a->type == b->type && a->from == b->from && a->to == b->to);
    CHECK(a->ballot.round == b->ballot.round &&
          a->ballot.node_id == b->ballot.node_id);
    CHECK(a->slot == b->slot && a->commit == b->commit && a->aux == b->aux);
    CHECK(a->aux_ballot.round == b->aux_ballot.round &&
          a->aux_ballot.node_id == b->aux_ballot.node_id);
    CHECK(a->chain_index == b->chain_index);
    CHECK(memcmp(a->chain_hash, b->chain_hash, PX_HASH_BYTES) == 0);
    CHECK(a->n_entries == b->n_entries && a->n_requests == b->n_requests);
    for (uint32_t i = 0; i < a->n_entries; i++) {
        const px_entry *x = &a->entries[i], *y = &b->entries[i];
        CHECK(x->slot == y->slot && x->time_ms == y->time_ms);
        CHECK(x->ballot.round == y->ballot.round &&
              x->ballot.node_id == y->ballot.node_id);
        CHECK(x->kind == y->kind && x->len == y->len);
        CHECK(x->len == 0 || memcmp(x->data, y->data, x->len) == 0);
    }
    for (uint32_t i = 0; i < a->n_requests; i++) {
        const px_request *x = &a->requests[i], *y = &b->requests[i];
        CHECK(x->client_id == y->client_id && x->seq == y->seq &&
              x->ack_seq == y->ack_seq && x->len == y->len);
        CHECK(x->len == 0 || memcmp(x->op, y->op, x->len) == 0);
    }
}

/* P3 for a PAXOS frame. */
static void fuzz_paxos(const uint8_t *buf, size_t len)
{
    wire_decoded d, again;
    uint8_t *re = NULL;
    size_t re_len = 0;
    int rc = wire_decode_paxos(buf, len, &d);
    check_error(rc);
    if (rc) {
        CHECK(d.arrays == NULL);
        return;
    }
    CHECK(wire_paxos_size(&d.msg) == len);
    CHECK(wire_encode_paxos(&d.msg, &re, &re_len) == 0);
    check_same_bytes(buf, len, re, re_len);
    CHECK(wire_decode_paxos(re, re_len, &again) == 0);
    check_same_msg(&d.msg, &again.msg);
    wire_decoded_free(&again);
    wire_decoded_free(&d);
    free(re);
}

static void fuzz_hello(const uint8_t *buf, size_t len)
{
    wire_hello h;
    uint8_t *re = NULL;
    size_t re_len = 0;
    int rc = wire_decode_hello(buf, len, &h);
    check_error(rc);
    if (rc)
        return;
    CHECK(wire_encode_hello(&h, &re, &re_len) == 0);
    check_same_bytes(buf, len, re, re_len);
    free(re);
}

static void fuzz_snapshot(const uint8_t *buf, size_t len)
{
    wire_snapshot s;
    uint8_t *re = NULL;
    size_t re_len = 0;
    int rc = wire_decode_snapshot(buf, len, &s);
    check_error(rc);
    if (rc)
        return;
    CHECK(s.last <= 1 && s.offset <= s.total && s.len <= s.total - s.offset);
    CHECK(wire_encode_snapshot(&s, &re, &re_len) == 0);
    check_same_bytes(buf, len, re, re_len);
    free(re);
}

static void fuzz_client(const uint8_t *buf, size_t len)
{
    wire_client_req q;
    wire_client_reply r;
    uint8_t *re = NULL;
    size_t re_len = 0;
    int rc = wire_decode_client_req(buf, len, &q);
    check_error(rc);
    if (rc == 0) {
        CHECK(wire_encode_client_req(&q, &re, &re_len) == 0);
        check_same_bytes(buf, len, re, re_len);
        free(re);
        re = NULL;
    }
    rc = wire_decode_client_reply(buf, len, &r);
    check_error(rc);
    if (rc == 0) {
        CHECK(wire_encode_client_reply(&r, &re, &re_len) == 0);
        check_same_bytes(buf, len, re, re_len);
        free(re);
    }
}

static void fuzz_chain_head(const uint8_t *buf, size_t len)
{
    wire_chain_head h;
    uint8_t re[WIRE_HEADER_BYTES + 64];
    size_t re_len = 0;
    int rc = wire_decode_chain_head(buf, len, &h);
    check_error(rc);
    if (rc == 0) {
        CHECK(wire_encode_chain_head_into(&h, re, sizeof re, &re_len) == 0);
        check_same_bytes(buf, len, re, re_len);
    }
}

static void fuzz_snapshot_ask(const uint8_t *buf, size_t len)
{
    wire_snapshot_ask a;
    uint8_t re[WIRE_HEADER_BYTES + 64];
    size_t re_len = 0;
    int rc = wire_decode_snapshot_ask(buf, len, &a);
    check_error(rc);
    if (rc == 0) {
        CHECK(a.len > 0 && a.offset <= UINT64_MAX - a.len);
        CHECK(wire_encode_snapshot_ask_into(&a, re, sizeof re, &re_len) == 0);
        check_same_bytes(buf, len, re, re_len);
    }
}

static void fuzz_all_decoders(const uint8_t *buf, size_t len)
{
    wire_header h;
    int rc = wire_peek(buf, len, &h);
    check_error(rc);
    if (rc == 0)
        CHECK(h.kind >= WIRE_PAXOS && h.kind < WIRE_KIND_COUNT &&
              (size_t)h.body_len + WIRE_HEADER_BYTES == len);
    /* the first piece's header check agrees with wire_peek on a whole
     * frame, and never declares more than WIRE_MAX_FRAME */
    size_t total = 0;
    int frc = wire_frame_size(buf, len, &total);
    check_error(frc);
    if (rc == 0)
        CHECK(frc == 0 && total == len);
    if (frc == 0)
        CHECK(total >= WIRE_HEADER_BYTES && total <= WIRE_MAX_FRAME);
    fuzz_paxos(buf, len);
    fuzz_hello(buf, len);
    fuzz_snapshot(buf, len);
    fuzz_client(buf, len);
    fuzz_chain_head(buf, len);
    fuzz_snapshot_ask(buf, len);
}

/* ------------------------------------------------------ generated msgs */

typedef struct cursor {
    const uint8_t *p;
    size_t left;
} cursor;

static uint64_t take(cursor *c, unsigned bytes)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < bytes && c->left; i++, c->left--, c->p++)
        v |= (uint64_t)*c->p << (8 * i);
    return v;
}

/* P4: a message whose fields come from the input. */
static void fuzz_generated(const uint8_t *data, size_t size)
{
    enum { MAX_ITEMS = 16 };
    px_entry ents[MAX_ITEMS];
    px_request reqs[MAX_ITEMS];
    px_msg m;
    cursor c = {data, size};

    memset(&m, 0, sizeof m);
    m.type = (uint8_t)take(&c, 1);
    m.from = (uint32_t)take(&c, 4);
    m.to = (uint32_t)take(&c, 4);
    m.ballot.round = take(&c, 8);
    m.ballot.node_id = (uint32_t)take(&c, 4);
    m.slot = take(&c, 8);
    m.commit = take(&c, 8);
    m.aux = take(&c, 8);
    m.chain_index = take(&c, 8);
    m.n_entries = (uint32_t)(take(&c, 1) % (MAX_ITEMS + 1));
    m.n_requests = (uint32_t)(take(&c, 1) % (MAX_ITEMS + 1));
    for (uint32_t i = 0; i < m.n_entries; i++) {
        ents[i].slot = take(&c, 8);
        ents[i].ballot.round = take(&c, 2);
        ents[i].ballot.node_id = (uint32_t)take(&c, 1);
        ents[i].time_ms = take(&c, 4);
        ents[i].kind = (uint8_t)take(&c, 1);
        ents[i].len = (uint32_t)take(&c, 1);
        if (ents[i].len > c.left)
            ents[i].len = (uint32_t)c.left;
        ents[i].data = ents[i].len ? c.p : NULL;
        c.p += ents[i].len;
        c.left -= ents[i].len;
    }
    for (uint32_t i = 0; i < m.n_requests; i++) {
        reqs[i].client_id = take(&c, 8);
        reqs[i].seq = take(&c, 4);
        reqs[i].ack_seq = take(&c, 4);
        reqs[i].len = (uint32_t)take(&c, 1);
        if (reqs[i].len > c.left)
            reqs[i].len = (uint32_t)c.left;
        reqs[i].op = reqs[i].len ? c.p : NULL;
        c.p += reqs[i].len;
        c.left -= reqs[i].len;
    }
    m.entries = m.n_entries ? ents : NULL;
    m.requests = m.n_requests ? reqs : NULL;

    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = wire_encode_paxos(&m, &buf, &len);
    bool valid_type = m.type >= PX_MSG_PREPARE && m.type < PX_MSG_TYPE_COUNT;
    bool valid_kinds = true;
    for (uint32_t i = 0; i < m.n_entries; i++)
        valid_kinds = valid_kinds && ents[i].kind <= PX_ENTRY_LAST;
    CHECK((rc == 0) == (valid_type && valid_kinds));
    if (rc) {
        CHECK(rc == -EINVAL);
        return;
    }
    wire_decoded d;
    CHECK(wire_decode_paxos(buf, len, &d) == 0);
    check_same_msg(&m, &d.msg);
    wire_decoded_free(&d);
    free(buf);
}

/* ------------------------------------------------------------- entry */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1u << 20))
        return 0;
    /* exact-size heap copy: any over-read is an ASan report */
    uint8_t *raw = malloc(size ? size : 1);
    if (!raw)
        return 0;
    if (size)
        memcpy(raw, data, size);
    fuzz_all_decoders(raw, size);
    free(raw);

    uint8_t *framed = malloc(WIRE_HEADER_BYTES + size);
    if (!framed)
        return 0;
    for (uint8_t kind = WIRE_PAXOS; kind < WIRE_KIND_COUNT; kind++) {
        uint32_t body = (uint32_t)size;
        memcpy(framed, "PXFS", 4);
        framed[4] = WIRE_VERSION;
        framed[5] = kind;
        framed[6] = framed[7] = 0;
        for (int k = 0; k < 4; k++)
            framed[8 + k] = (uint8_t)(body >> (8 * k));
        if (size)
            memcpy(framed + WIRE_HEADER_BYTES, data, size);
        fuzz_all_decoders(framed, WIRE_HEADER_BYTES + size);
    }
    free(framed);

    fuzz_generated(data, size);
    return 0;
}
