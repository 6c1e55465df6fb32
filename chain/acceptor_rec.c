/*
 * acceptor_rec.c - owns the acceptor store's record format (the table at
 * the top of acceptor.c): encoding, parsing with every checksum and field
 * checked, and the rule that tells a torn last write from damage
 * (acceptor.c invariant 4).
 */
#include "acceptor_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void rec_header(uint8_t *p, uint8_t type, uint32_t rec_len)
{
    le_put32(p, ACC_MAGIC);
    p[4] = type;
    p[5] = ACC_VERSION;
    le_put16(p + 6, 0);
    le_put32(p + 8, rec_len);
    le_put32(p + 12, chain_crc32(p, 12));
}

static void rec_seal(uint8_t *p, uint32_t rec_len)
{
    le_put32(p + rec_len - 4, chain_crc32(p + 16, rec_len - 20));
}

uint32_t acc_encode_promise(uint8_t *p, px_ballot b)
{
    rec_header(p, ACC_PROMISE, ACC_PROMISE_BYTES);
    le_put64(p + 16, b.round);
    le_put32(p + 24, b.node_id);
    rec_seal(p, ACC_PROMISE_BYTES);
    return ACC_PROMISE_BYTES;
}

uint32_t acc_encode_accept(uint8_t *p, const px_entry *e)
{
    uint32_t rec_len = ACC_ACCEPT_FIXED + e->len;
    rec_header(p, ACC_ACCEPT, rec_len);
    le_put64(p + 16, e->slot);
    le_put64(p + 24, e->ballot.round);
    le_put32(p + 32, e->ballot.node_id);
    p[36] = e->kind;
    p[37] = p[38] = p[39] = 0;
    le_put64(p + 40, e->time_ms);
    le_put32(p + 48, e->len);
    if (e->len)
        memcpy(p + 52, e->data, e->len);
    rec_seal(p, rec_len);
    return rec_len;
}

uint32_t acc_encode_forget(uint8_t *p, uint64_t upto)
{
    rec_header(p, ACC_FORGET, ACC_FORGET_BYTES);
    le_put64(p + 16, upto);
    rec_seal(p, ACC_FORGET_BYTES);
    return ACC_FORGET_BYTES;
}

uint32_t acc_encode_mark(uint8_t *p, const chain_mark *m)
{
    rec_header(p, ACC_MARK, ACC_MARK_BYTES);
    le_put64(p + 16, m->index);
    memcpy(p + 24, m->hash, CHAIN_HASH_BYTES);
    rec_seal(p, ACC_MARK_BYTES);
    return ACC_MARK_BYTES;
}

uint32_t acc_encode_incarnation(uint8_t *p, uint64_t counter,
                                uint64_t nonce)
{
    rec_header(p, ACC_INCARNATION, ACC_INCARNATION_BYTES);
    le_put64(p + 16, counter);
    le_put64(p + 24, nonce);
    rec_seal(p, ACC_INCARNATION_BYTES);
    return ACC_INCARNATION_BYTES;
}

uint32_t acc_encode_peer(uint8_t *p, const acceptor_peer *peer)
{
    rec_header(p, ACC_PEER, ACC_PEER_BYTES);
    le_put32(p + 16, peer->id);
    le_put32(p + 20, 0);
    le_put64(p + 24, peer->counter);
    le_put64(p + 32, peer->nonce);
    rec_seal(p, ACC_PEER_BYTES);
    return ACC_PEER_BYTES;
}

uint32_t acc_encode_recovery(uint8_t *p, bool recovering)
{
    rec_header(p, ACC_RECOVERY, ACC_RECOVERY_BYTES);
    le_put64(p + 16, recovering ? 1 : 0);
    rec_seal(p, ACC_RECOVERY_BYTES);
    return ACC_RECOVERY_BYTES;
}

static uint32_t rec_fixed_len(uint8_t type)
{
    switch (type) {
    case ACC_PROMISE: return ACC_PROMISE_BYTES;
    case ACC_ACCEPT: return ACC_ACCEPT_FIXED;
    case ACC_FORGET: return ACC_FORGET_BYTES;
    case ACC_MARK: return ACC_MARK_BYTES;
    case ACC_INCARNATION: return ACC_INCARNATION_BYTES;
    case ACC_PEER: return ACC_PEER_BYTES;
    case ACC_RECOVERY: return ACC_RECOVERY_BYTES;
    default: return 0;
    }
}

/* ACC_OK and *r filled, or why not with *reason. */
int acc_rec_parse(const uint8_t *p, uint64_t avail, acc_rec *r,
                  const char **reason)
{
    if (avail < ACC_HEADER_BYTES) {
        *reason = "truncated record header";
        return ACC_BAD_SHORT;
    }
    if (le_get32(p) != ACC_MAGIC) {
        *reason = "bad magic";
        return ACC_BAD_HEADER;
    }
    if (chain_crc32(p, 12) != le_get32(p + 12)) {
        *reason = "bad header checksum";
        return ACC_BAD_HEADER;
    }
    r->type = p[4];
    r->rec_len = le_get32(p + 8);
    if (p[5] != ACC_VERSION || le_get16(p + 6) != 0) {
        *reason = "unknown record version";
        return ACC_BAD_HEADER;
    }
    uint64_t min = rec_fixed_len(r->type);
    if (!min || r->rec_len < min ||
        r->rec_len > (uint64_t)ACC_ACCEPT_FIXED + PX_MAX_VALUE_BYTES ||
        (r->type != ACC_ACCEPT && r->rec_len != min)) {
        *reason = "bad record type or length";
        return ACC_BAD_HEADER;
    }
    if (r->rec_len > avail) {
        *reason = "record extends past end of file";
        return ACC_BAD_PAST_END;
    }
    if (chain_crc32(p + 16, r->rec_len - 20) !=
        le_get32(p + r->rec_len - 4)) {
        *reason = "bad checksum";
        return ACC_BAD_BODY;
    }
    switch (r->type) {
    case ACC_PROMISE:
        r->ballot.round = le_get64(p + 16);
        r->ballot.node_id = le_get32(p + 24);
        break;
    case ACC_ACCEPT:
        r->entry.slot = le_get64(p + 16);
        r->entry.ballot.round = le_get64(p + 24);
        r->entry.ballot.node_id = le_get32(p + 32);
        r->entry.kind = p[36];
        r->entry.time_ms = le_get64(p + 40);
        r->entry.len = le_get32(p + 48);
        r->entry.data = p + 52;
        if ((uint64_t)r->entry.len + ACC_ACCEPT_FIXED != r->rec_len ||
            p[37] || p[38] || p[39] || r->entry.kind > PX_ENTRY_LAST ||
            r->entry.slot == 0) {
            *reason = "inconsistent accept record";
            return ACC_BAD_BODY;
        }
        break;
    case ACC_FORGET:
        r->upto = le_get64(p + 16);
        break;
    case ACC_MARK:
        r->upto = le_get64(p + 16);
        r->hash = p + 24;
        break;
    case ACC_INCARNATION:
        r->peer = (acceptor_peer){ .id = 0, .counter = le_get64(p + 16),
                                   .nonce = le_get64(p + 24) };
        break;
    case ACC_PEER:
        r->peer = (acceptor_peer){ .id = le_get32(p + 16),
                                   .counter = le_get64(p + 24),
                                   .nonce = le_get64(p + 32) };
        if (r->peer.id == 0 || le_get32(p + 20) != 0) {
            *reason = "inconsistent peer record";
            return ACC_BAD_BODY;
        }
        break;
    default:
        r->state = le_get64(p + 16);
        if (r->state > 1) {
            *reason = "inconsistent recovery record";
            return ACC_BAD_BODY;
        }
        break;
    }
    *reason = NULL;
    return ACC_OK;
}

/* True when a valid record starts anywhere in p[from, len). */
bool acc_valid_record_after(const uint8_t *p, uint64_t from, uint64_t len)
{
    for (uint64_t off = from; off + ACC_HEADER_BYTES <= len; off++) {
        acc_rec r;
        const char *reason;
        if (p[off] != 0x70)   /* first magic byte: skip quickly */
            continue;
        if (acc_rec_parse(p + off, len - off, &r, &reason) == ACC_OK)
            return true;
    }
    return false;
}

/* End of the used part: after the last non-zero byte. */
uint64_t acc_used_end(const uint8_t *p, uint64_t len)
{
    while (len > 0 && p[len - 1] == 0)
        len--;
    return len;
}

/* One step of the zlib CRC-32 register over a zero byte (reflected,
 * polynomial 0xEDB88320, no init or final xor: the linear part). */
static uint32_t crc_zero_byte(uint32_t r)
{
    for (int k = 0; k < 8; k++)
        r = (r >> 1) ^ (0xEDB88320u & (0u - (r & 1)));
    return r;
}

/* Invariant 4a: is a record's body checksum wrong by exactly what one
 * flipped bit (in the body or in the stored checksum) would make it?
 * CRC-32 is linear: flipping bit b of byte k of an n-byte body changes the
 * checksum by Z^(n-1-k)(s_b), Z one step over a zero byte and s_b one
 * step over the byte 1 << b, whatever the rest of the body; those changes
 * differ for every position (the polynomial's period is far longer than
 * any record), so the test has no false negatives.  O(8 n) steps. */
static bool acc_one_bit_off(const uint8_t *rec, uint64_t rec_len)
{
    uint64_t n = rec_len - 20;   /* the body: bytes 16..R-5 */
    uint32_t syn = chain_crc32(rec + 16, (size_t)n) ^
                   le_get32(rec + rec_len - 4);
    if (syn != 0 && (syn & (syn - 1)) == 0)
        return true;             /* a bit of the stored checksum */
    uint32_t d[8];
    for (int b = 0; b < 8; b++)
        d[b] = crc_zero_byte((uint32_t)1u << b);   /* the body's last byte */
    for (uint64_t k = n; k-- > 0;) {
        for (int b = 0; b < 8; b++) {
            if (d[b] == syn)
                return true;
            d[b] = crc_zero_byte(d[b]);
        }
    }
    return false;
}

/* Invariant 4: does the bad record at `off` look like a write that did not
 * finish?  `len` is its length when its header is valid (ACC_BAD_BODY),
 * else 0. */
bool acc_looks_torn(const uint8_t *p, uint64_t off, uint64_t size,
                    uint64_t len)
{
    /* a whole record one bit off was written whole and then changed */
    if (len != 0 && acc_one_bit_off(p + off, len))
        return false;
    if (len == 0) {
        /* the header's last byte never landed, nor anything after it */
        uint64_t from = off + ACC_HEADER_BYTES - 1;
        return from < size &&
               chain_all_zero(p + from, (size_t)(size - from));
    }
    uint64_t end = off + len;
    /* its checksum (the last 4 bytes) and everything after never landed */
    if (chain_all_zero(p + end - 4, (size_t)(size - (end - 4))))
        return true;
    /* or a whole aligned sector inside it was never written */
    for (uint64_t s = (off + ACC_SECTOR - 1) / ACC_SECTOR * ACC_SECTOR;
         s + ACC_SECTOR <= end; s += ACC_SECTOR)
        if (chain_all_zero(p + s, ACC_SECTOR))
            return true;
    /* or the write stopped at the last sector boundary inside it: the
     * rest of the record (a sector's worth or less, perhaps only the last
     * bytes of its checksum) and everything after never landed */
    uint64_t b = (end - 1) / ACC_SECTOR * ACC_SECTOR;
    return b > off && chain_all_zero(p + b, (size_t)(size - b));
}
