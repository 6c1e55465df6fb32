/*
 * hash.c - owns the block hash rule and the checksum helpers of chain/.
 *
 * encode(index, time_ms, kind, data), the bytes hashed after prev_hash:
 *   offset size  meaning
 *   0      8     index, u64 little-endian
 *   8      8     time_ms, u64 little-endian (leader's commit stamp)
 *   16     1     kind (enum px_entry_kind)
 *   17     4     data length L, u32 little-endian
 *   21     L     data
 * hash_i = SHA-256(hash_{i-1} (32 bytes) || encode(...)), hash_0 = zeros.
 *
 * Invariants:
 *   1. The hash depends only on these fields, never on where or how the
 *      block is stored, so every replica computes the same chain
 *      (DESIGN.md invariant 3).
 *   2. The length is hashed before the data, so no two different
 *      (kind, data) pairs share an encoding.
 */
#include "chain_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <zlib.h>

#define ENCODE_FIXED_BYTES 21

uint32_t chain_crc32(const uint8_t *p, size_t len)
{
    uLong crc = crc32(0L, Z_NULL, 0);
    /* zlib takes uInt lengths: feed in bounded pieces. */
    while (len > 0) {
        uInt piece = len > (1u << 30) ? (1u << 30) : (uInt)len;
        crc = crc32(crc, p, piece);
        p += piece;
        len -= piece;
    }
    return (uint32_t)crc;
}

int chain_all_zero(const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (p[i])
            return 0;
    return 1;
}

int chain_hasher_init(chain_hasher *h)
{
    h->md = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (!h->md)
        return -ENOMEM;
    h->ctx = EVP_MD_CTX_new();
    if (!h->ctx) {
        EVP_MD_free(h->md);
        h->md = NULL;
        return -ENOMEM;
    }
    return 0;
}

void chain_hasher_free(chain_hasher *h)
{
    if (h->ctx)
        EVP_MD_CTX_free(h->ctx);
    if (h->md)
        EVP_MD_free(h->md);
    h->ctx = NULL;
    h->md = NULL;
}

static int hash_with(EVP_MD_CTX *ctx, const EVP_MD *md,
                     const uint8_t prev[CHAIN_HASH_BYTES], uint64_t index,
                     uint64_t time_ms, uint8_t kind, const uint8_t *data,
                     uint32_t len, uint8_t out[CHAIN_HASH_BYTES])
{
    uint8_t fixed[ENCODE_FIXED_BYTES];
    unsigned int out_len = 0;

    le_put64(fixed, index);
    le_put64(fixed + 8, time_ms);
    fixed[16] = kind;
    le_put32(fixed + 17, len);
    if (EVP_DigestInit_ex(ctx, md, NULL) != 1 ||
        EVP_DigestUpdate(ctx, prev, CHAIN_HASH_BYTES) != 1 ||
        EVP_DigestUpdate(ctx, fixed, sizeof fixed) != 1 ||
        (len > 0 && EVP_DigestUpdate(ctx, data, len) != 1) ||
        EVP_DigestFinal_ex(ctx, out, &out_len) != 1 ||
        out_len != CHAIN_HASH_BYTES)
        return -EIO;
    return 0;
}

int chain_hasher_block(chain_hasher *h, const uint8_t prev[CHAIN_HASH_BYTES],
                       uint64_t index, uint64_t time_ms, uint8_t kind,
                       const uint8_t *data, uint32_t len,
                       uint8_t out[CHAIN_HASH_BYTES])
{
    return hash_with(h->ctx, h->md, prev, index, time_ms, kind, data, len,
                     out);
}

/* chain_hash_block cannot report failure (void in chain.h); the only way
 * it can fail is OpenSSL running out of memory, and a wrong hash would
 * silently fork this node's chain, so it stops the process instead. */
void chain_hash_block(const uint8_t prev_hash[CHAIN_HASH_BYTES],
                      uint64_t index, uint64_t time_ms, uint8_t kind,
                      const uint8_t *data, uint32_t len,
                      uint8_t out[CHAIN_HASH_BYTES])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx || hash_with(ctx, EVP_sha256(), prev_hash, index, time_ms, kind,
                          data, len, out) != 0) {
        fprintf(stderr, "paxosfs: SHA-256 unavailable (out of memory)\n");
        abort();
    }
    EVP_MD_CTX_free(ctx);
}

void chain_hex(const uint8_t *p, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * len] = '\0';
}

void chain_damage_set(chain_damage *d, const char *path, uint64_t offset,
                      uint64_t index, const char *reason)
{
    if (!d)
        return;
    memset(d, 0, sizeof *d);
    snprintf(d->path, sizeof d->path, "%s", path);
    d->offset = offset;
    d->index = index;
    snprintf(d->reason, sizeof d->reason, "%s", reason);
}
