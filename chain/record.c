/*
 * record.c - owns the block record format of chain segments (the table
 * in segment.c): parsing with every checksum and field checked, and
 * encoding.
 */
#include "segment_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------ records */

int seg_rec_parse(const uint8_t *p, uint64_t avail, rec_view *v,
                     const char **reason)
{
    if (avail < REC_HEADER_BYTES) {
        *reason = "truncated record header";
        return REC_SHORT_HEADER;
    }
    if (le_get32(p) != REC_MAGIC) {
        *reason = "bad magic";
        return REC_BAD_HEADER;
    }
    if (chain_crc32(p, 12) != le_get32(p + 12)) {
        *reason = "bad header checksum";
        return REC_BAD_HEADER;
    }
    if (le_get16(p + 4) != REC_VERSION || le_get16(p + 6) != 0) {
        *reason = "unknown record version";
        return REC_BAD_HEADER;
    }
    uint32_t rec_len = le_get32(p + 8);
    if (rec_len < REC_FIXED_BYTES || rec_len > REC_MAX_BYTES) {
        *reason = "bad record length";
        return REC_BAD_HEADER;
    }
    if (rec_len > avail) {
        *reason = "record extends past end of file";
        return REC_PAST_END;
    }
    if (chain_crc32(p + 16, rec_len - 20) != le_get32(p + rec_len - 4)) {
        *reason = "bad checksum";
        return REC_BAD_BODY;
    }
    v->index = le_get64(p + 16);
    v->time_ms = le_get64(p + 24);
    v->kind = p[32];
    v->len = le_get32(p + 36);
    v->rec_len = rec_len;
    if ((uint64_t)v->len + REC_FIXED_BYTES != rec_len ||
        p[33] || p[34] || p[35]) {
        *reason = "inconsistent record length";
        return REC_BAD_BODY;
    }
    if (v->kind > PX_ENTRY_LAST) {
        *reason = "unknown block kind";
        return REC_BAD_BODY;
    }
    v->data = p + 40;
    v->prev = p + 40 + v->len;
    v->hash = p + 72 + v->len;
    *reason = NULL;
    return REC_OK;
}

/* Encode a record into p (REC_FIXED_BYTES + len bytes). */
void seg_rec_encode(uint8_t *p, uint64_t index, uint64_t time_ms,
                       uint8_t kind, const uint8_t *data, uint32_t len,
                       const uint8_t prev[CHAIN_HASH_BYTES],
                       const uint8_t hash[CHAIN_HASH_BYTES])
{
    uint32_t rec_len = REC_FIXED_BYTES + len;

    le_put32(p, REC_MAGIC);
    le_put16(p + 4, REC_VERSION);
    le_put16(p + 6, 0);
    le_put32(p + 8, rec_len);
    le_put32(p + 12, chain_crc32(p, 12));
    le_put64(p + 16, index);
    le_put64(p + 24, time_ms);
    p[32] = kind;
    p[33] = p[34] = p[35] = 0;
    le_put32(p + 36, len);
    if (len)
        memcpy(p + 40, data, len);
    memcpy(p + 40 + len, prev, CHAIN_HASH_BYTES);
    memcpy(p + 72 + len, hash, CHAIN_HASH_BYTES);
    le_put32(p + rec_len - 4, chain_crc32(p + 16, rec_len - 20));
}

int chain_record_parse(const uint8_t *p, uint64_t avail, chain_record *r,
                       const char **reason)
{
    rec_view v;
    int st = seg_rec_parse(p, avail, &v, reason);
    if (st == REC_SHORT_HEADER || st == REC_PAST_END)
        return -EAGAIN;
    if (st != REC_OK)
        return -EBADMSG;
    r->index = v.index;
    r->time_ms = v.time_ms;
    r->kind = v.kind;
    r->len = v.len;
    r->rec_len = v.rec_len;
    r->data = v.data;
    r->prev = v.prev;
    r->hash = v.hash;
    return 0;
}

uint32_t chain_record_size(uint32_t len)
{
    return REC_FIXED_BYTES + len;
}

uint32_t chain_record_header_bytes(void)
{
    return REC_HEADER_BYTES;
}

uint32_t chain_record_length(const uint8_t *header)
{
    return le_get32(header + 8);
}

void chain_record_encode(uint8_t *p, const chain_block *b)
{
    seg_rec_encode(p, b->index, b->time_ms, b->kind, b->data, b->len, b->prev_hash,
               b->hash);
}

uint64_t seg_hash8(const uint8_t *h)
{
    return le_get64(h);
}

