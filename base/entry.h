/*
 * entry.h - the encodings of entry values, shared by the core (which
 * builds them: a leader batches requests into a slot, a configuration
 * change is a CONFIG entry) and the state machine (which applies them).
 */
#ifndef PAXOSFS_BASE_ENTRY_H
#define PAXOSFS_BASE_ENTRY_H

#include "types.h"

/* Batch encoding (PX_ENTRY_BATCH data), little-endian:
 *   u32 count, then count x { u64 client_id, u64 seq, u64 ack_seq,
 *                             u32 len, len bytes op }
 * px_batch_next iterates: set *offset = 0 first; returns 1 and fills *req
 * (pointing into data) while requests remain, 0 at the end, -EINVAL on a
 * malformed batch. */
int px_batch_next(const uint8_t *data, uint32_t len, uint32_t *offset,
                  px_request *req);
uint32_t px_batch_count(const uint8_t *data, uint32_t len);

/* Members encoding, little-endian: u32 n_voters, n_voters x u32 id,
 * u32 n_learners, n_learners x u32 id.  Encode returns bytes written,
 * -EINVAL (px_members_valid fails) or -ENOSPC; decode takes exactly that
 * encoding (0 or -EINVAL). */
int px_members_encode(const px_members *m, uint8_t *buf, uint32_t cap);
int px_members_decode(const uint8_t *buf, uint32_t len, px_members *m);

/* A CONFIG entry's value: the members encoding, then, when the host gave
 * a context (what it needs to reach new members: their addresses; who
 * asked for the change), u32 context_len (1..PX_CONFIG_MAX_CONTEXT) and
 * the context bytes.  A value without a context is a plain members
 * encoding, so older CONFIG entries decode unchanged.  Encode returns
 * bytes written, -EINVAL or -ENOSPC; decode 0 or -EINVAL, with *context
 * pointing into buf (NULL when there is none). */
#define PX_CONFIG_MAX_CONTEXT 4096u
int px_config_encode(const px_members *m, const uint8_t *context,
                     uint32_t context_len, uint8_t *buf, uint32_t cap);
int px_config_decode(const uint8_t *buf, uint32_t len, px_members *m,
                     const uint8_t **context, uint32_t *context_len);

/* Encoder of a batch: a header, then one record per request; a record of
 * an op of `op_len` bytes takes px_batch_req_bytes(op_len). */
uint64_t px_batch_req_bytes(uint32_t op_len);
void px_batch_put_header(uint8_t *buf, uint32_t count);
uint32_t px_batch_put(uint8_t *buf, const px_request *req);

/* Checkpoint entry encoding (PX_ENTRY_CHECKPOINT data), exactly
 * PX_CHECKPOINT_BYTES: u64 index, then the PX_DIGEST_BYTES state digest
 * the proposing leader's state had once it applied `index` (a slot before
 * the checkpoint's own).  encode returns PX_CHECKPOINT_BYTES or -ENOSPC;
 * decode 0 or -EINVAL (wrong length, index 0). */
#define PX_DIGEST_BYTES 32u
#define PX_CHECKPOINT_BYTES (8u + PX_DIGEST_BYTES)
typedef struct px_checkpoint {
    uint64_t index;
    uint8_t digest[PX_DIGEST_BYTES];
} px_checkpoint;

int px_checkpoint_encode(const px_checkpoint *c, uint8_t *buf, uint32_t cap);
int px_checkpoint_decode(const uint8_t *buf, uint32_t len, px_checkpoint *c);

/* A configuration is valid: 1..PX_MAX_MEMBERS members in total, at least
 * one voter, non-zero ids, none listed twice. */
bool px_members_valid(const px_members *m);

#endif
