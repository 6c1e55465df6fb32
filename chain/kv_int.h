/*
 * kv_int.h - helpers shared by the files of the key-value state machine
 * (kv.c, kv_op.c, kv_snapshot.c).  Not part of the module surface.
 */
#ifndef PAXOSFS_KV_INT_H
#define PAXOSFS_KV_INT_H

#include <stdbool.h>

#include "kv.h"
#include "chain_int.h"

#define KV_SKIP_LEVELS 24        /* skip list levels (kv_map.h) */
#define KV_SESSION_CLIENTS 4096  /* same on every replica (kv.c inv. 6) */
#define KV_SESSION_PER_CLIENT 1024 /* >= a node's writes in flight */
/* The longest session table encoding (kv_sessions_encode) these bounds
 * allow: header, then per client 40 bytes, 12 per result, 8 per gap. */
#define KV_SESSIONS_MAX_BYTES \
    (12ull + (uint64_t)KV_SESSION_CLIENTS * \
     (40ull + 20ull * KV_SESSION_PER_CLIENT))

/* A new value holding a || b (refs = 1), or NULL.  A NULL `a` (or `b`)
 * leaves its alen (blen) bytes for the caller to fill. */
kv_value *kv_value_new(const uint8_t *a, uint32_t alen, const uint8_t *b,
                       uint32_t blen, uint64_t mtime_ms, uint64_t version,
                       uint64_t ident);

/* 0 if `key` may be stored (a path, or a directory's path and '/'),
 * else -EINVAL or -ENAMETOOLONG. */
int kv_key_check(const char *key, size_t len);

kv_sessions *kv_session_table(kv *s);
const kv_sessions *kv_session_table_const(const kv *s);
void kv_set_applied(kv *s, uint64_t index);
/* Store v under key, taking the caller's reference (released on error). */
int kv_insert_value(kv *s, const char *key, size_t len, kv_value *v);
/* kv_insert_value for a key the caller knows is absent (the loader: keys
 * strictly ascending), without looking it up. */
int kv_insert_new(kv *s, const char *key, size_t len, kv_value *v);
/* kv_insert_new for a key greater than every key in the map (the loader:
 * keys strictly ascending): linked after tail[l], the last node of each
 * level l, which the caller keeps (all NULL for an empty map) and this
 * updates.  Takes the caller's reference (released on error). */
struct kv_node;
int kv_append_new(kv *s, const char *key, size_t len, kv_value *v,
                  struct kv_node **tail);
/* A check without the map (snapfile_load without a state): counts the
 * record in s's key count, value bytes and digest and stores nothing, so
 * s no longer describes its map and may only be read for those three
 * figures and destroyed.  0 or -ENOMEM (the hash). */
int kv_tally_record(kv *s, const char *key, size_t len, const kv_value *v);
/* Exchange the whole contents of two maps (neither frozen). */
void kv_swap(kv *a, kv *b);
/* True while a view is out (kv_freeze). */
bool kv_frozen(const kv *s);
/* SHA-256 of the canonical record of one key (kv.h, "State digest"):
 * 0 or -EIO. */
int kv_record_hash(chain_hasher *h, const char *key, size_t len,
                   const kv_value *v, uint8_t out[KV_DIGEST_BYTES]);

/* One record of the snapshot payload (kv_stream.c): its header (all but
 * the value bytes) is kv_record_header_size bytes, written by
 * kv_record_header_put. */
#define KV_RECORD_OWNED 0x8000u  /* in the key length: owner and mode follow */
#define KV_RECORD_COUNTED 0x4000u /* in the key length: a change count
                                     follows (kv_value.changes != 1) */
size_t kv_record_header_size(size_t key_len, const kv_value *v);
size_t kv_record_header_put(uint8_t *out, const char *key, size_t key_len,
                            const kv_value *v);

/* Incremental parser of the snapshot payload (kv_stream.c): feed the
 * uncompressed payload in pieces of any size; finish gives the built
 * state (applied = `applied`).  Errors are final: -EINVAL (malformed,
 * kv_loader_error says what) or -ENOMEM. */
typedef struct kv_loader kv_loader;
int kv_loader_new(kv_loader **out);
/* Check the payload without building the map (before the first feed):
 * finish then gives a state holding only the key count, value bytes and
 * digest of the records (kv_tally_record), to be read and destroyed. */
void kv_loader_check_only(kv_loader *l);
int kv_loader_feed(kv_loader *l, const uint8_t *p, size_t len);
int kv_loader_finish(kv_loader *l, uint64_t applied, kv **out);
void kv_loader_free(kv_loader *l);
uint64_t kv_loader_keys(const kv_loader *l);
uint64_t kv_loader_consumed(const kv_loader *l);
const char *kv_loader_error(const kv_loader *l);

#endif /* PAXOSFS_KV_INT_H */
