/*
 * chain_int.h - helpers private to chain/: little-endian field access,
 * checksums, the SHA-256 block hasher, hex formatting and array growth.  Not part of the
 * module surface (chain.h, kv.h, chain_io.h are).
 */
#ifndef PAXOSFS_CHAIN_INT_H
#define PAXOSFS_CHAIN_INT_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "../base/le.h"
#include "chain.h"

/* Grow an array of `elem`-byte elements with capacity *cap < need so that
 * it holds `need`: capacities double from `first`.  The new array (*cap
 * updated), or NULL with `buf` and *cap untouched. */
static inline void *chain_grow(void *buf, size_t *cap, size_t need,
                               size_t elem, size_t first)
{
    size_t c = *cap ? *cap : first;
    while (c < need) {
        if (c > SIZE_MAX / 2)
            return NULL;
        c *= 2;
    }
    if (c > SIZE_MAX / elem)
        return NULL;
    void *p = realloc(buf, c * elem);
    if (p)
        *cap = c;
    return p;
}

/* CRC-32 (zlib's polynomial) of `len` bytes: the record checksums. */
uint32_t chain_crc32(const uint8_t *p, size_t len);

/* True when all `len` bytes are zero. */
int chain_all_zero(const uint8_t *p, size_t len);

/* A reusable SHA-256 context, so that verifying many blocks does not
 * allocate per block. */
typedef struct chain_hasher {
    void *md;   /* EVP_MD * */
    void *ctx;  /* EVP_MD_CTX * */
} chain_hasher;

int chain_hasher_init(chain_hasher *h);          /* 0 or -ENOMEM */
void chain_hasher_free(chain_hasher *h);
/* The hash rule of chain.h with a prepared context; 0 or -EIO. */
int chain_hasher_block(chain_hasher *h, const uint8_t prev[CHAIN_HASH_BYTES],
                       uint64_t index, uint64_t time_ms, uint8_t kind,
                       const uint8_t *data, uint32_t len,
                       uint8_t out[CHAIN_HASH_BYTES]);

/* Lower-case hex of `len` bytes into out (2*len+1 bytes with the NUL). */
void chain_hex(const uint8_t *p, size_t len, char *out);

/* Fill *d (when non-NULL). */
void chain_damage_set(chain_damage *d, const char *path, uint64_t offset,
                      uint64_t index, const char *reason);

/* One block record of a segment file (layout in segment.c), for files
 * that carry records elsewhere (backups).  chain_record_parse checks the
 * record at p (avail bytes there): 0 with *r pointing into p, -EAGAIN
 * when fewer than a whole record's bytes are there (the header says how
 * many: chain_record_length once chain_record_header_bytes are there), or
 * -EBADMSG (a checksum or field is wrong, *reason says which).  It does
 * not check the hash rule or the link.  chain_record_encode writes
 * chain_record_size(b->len) bytes. */
typedef struct chain_record {
    uint64_t index, time_ms;
    uint8_t kind;
    uint32_t len, rec_len;
    const uint8_t *data, *prev, *hash;
} chain_record;

int chain_record_parse(const uint8_t *p, uint64_t avail, chain_record *r,
                       const char **reason);
uint32_t chain_record_size(uint32_t len);
uint32_t chain_record_header_bytes(void);
uint32_t chain_record_length(const uint8_t *header);
void chain_record_encode(uint8_t *p, const chain_block *b);

#endif /* PAXOSFS_CHAIN_INT_H */
