/*
 * sessions.h - the exactly-once session table of the key-value state
 * machine (DESIGN.md invariant 5): part of the replicated state, so it
 * lives with the state machine, not the consensus core.
 */
#ifndef PAXOSFS_CHAIN_SESSIONS_H
#define PAXOSFS_CHAIN_SESSIONS_H

#include "../base/types.h"

/* Exactly-once: the state machine keeps one kv_sessions table, updated
 * only while applying committed entries, so every replica holds the same
 * table (and it travels in snapshots).  Before applying a request:
 *   kv_sessions_check(t, req, &result) ==
 *     KV_SESSION_NEW        apply it, then kv_sessions_record(...)
 *     KV_SESSION_DUPLICATE  already applied: *result is the stored answer
 *     KV_SESSION_FORGOTTEN  already applied and acknowledged (seq below the
 *                           client's ack_seq): skip, answer nothing
 * Bounded: at most `max_clients` clients (the least recently used client is
 * evicted, deterministically) and `max_per_client` unacknowledged results
 * per client. */
typedef struct kv_sessions kv_sessions;

enum { KV_SESSION_NEW = 0, KV_SESSION_DUPLICATE = 1, KV_SESSION_FORGOTTEN = 2 };

kv_sessions *kv_sessions_create(uint32_t max_clients, uint32_t max_per_client);
void kv_sessions_destroy(kv_sessions *t);
int kv_sessions_check(kv_sessions *t, const px_request *req, int32_t *result);
int kv_sessions_record(kv_sessions *t, const px_request *req, int32_t result,
                       uint64_t slot);
/* Serialisation for snapshots: kv_sessions_encode returns the byte count
 * needed (call with cap 0 to size) or -ENOSPC; decode replaces contents. */
int64_t kv_sessions_encode(const kv_sessions *t, uint8_t *buf, uint64_t cap);
int kv_sessions_decode(kv_sessions *t, const uint8_t *buf, uint64_t len);

#endif
