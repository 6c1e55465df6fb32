/*
 * kv_int.h - helpers shared by the files of the key-value state machine
 * (kv.c, kv_op.c, kv_snapshot.c).  Not part of the module surface.
 */
#ifndef PAXOSFS_KV_INT_H
#define PAXOSFS_KV_INT_H

#include <stdbool.h>

#include "kv.h"

/* A new value holding a || b (refs = 1), or NULL. */
kv_value *kv_value_new(const uint8_t *a, uint32_t alen, const uint8_t *b,
                       uint32_t blen, uint64_t mtime_ms, uint64_t version,
                       uint64_t ident);

/* 0 if `key` may be stored, else -EINVAL or -ENAMETOOLONG. */
int kv_key_check(const char *key, size_t len);

kv_sessions *kv_session_table(kv *s);
const kv_sessions *kv_session_table_const(const kv *s);
void kv_set_applied(kv *s, uint64_t index);
/* Store v under key, taking the caller's reference (released on error). */
int kv_insert_value(kv *s, const char *key, size_t len, kv_value *v);
/* Exchange the whole contents of two maps. */
void kv_swap(kv *a, kv *b);

#endif /* PAXOSFS_KV_INT_H */
