/*
 * wire_int.h - private to net/wire*.c: the byte cursor every encoder and
 * decoder uses (on base/le.h) and the frame helpers they share.
 */
#ifndef PAXOSFS_WIRE_INT_H
#define PAXOSFS_WIRE_INT_H

#include "wire.h"

#include <string.h>

#include "../base/le.h"

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

/* ------------------------------------------------------- frame helpers */

void wire_put_header(uint8_t **p, uint8_t kind, uint32_t body_len);
/* Validate a frame of `kind`; on success *body points at its body and
 * *body_len is its size. */
int wire_open_body(const uint8_t *buf, size_t len, uint8_t kind,
                   const uint8_t **body, size_t *body_len);
/* Common tail of every encoder: room check and header.  `frame` has been
 * checked against WIRE_MAX_FRAME already. */
int wire_start(uint8_t *buf, size_t cap, size_t frame, uint8_t kind,
               uint8_t **p);
/* An `_into` encoder with the message passed untyped, for wire_alloc. */
typedef int (*wire_into_fn)(const void *msg, uint8_t *buf, size_t cap,
                            size_t *out_len);

/* The malloc'ing encoders: allocate exactly `frame` bytes and encode into
 * them. */
int wire_alloc(const void *msg, size_t frame, wire_into_fn into,
               uint8_t **out, size_t *out_len);

#endif
