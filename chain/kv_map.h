/*
 * kv_map.h - private to kv.c and kv_apply.c: the map's layout (a hash
 * table for lookups over a skip list in key order) and the operations on
 * it that applying an op needs.  kv.c's header comment has the invariants.
 */
#ifndef PAXOSFS_KV_MAP_H
#define PAXOSFS_KV_MAP_H

#include "kv_int.h"

#define KV_SKIP_MAX KV_SKIP_LEVELS /* 4^24 keys before heights saturate */
#define KV_TABLE_MIN 64
#define KV_REQUEST_MIN_BYTES 28  /* encoded request without op bytes */
#define KV_RECLAIM_PER_APPLY 64  /* DEAD nodes reclaimed per applied entry */
#define KV_NODE_DEAD 1

typedef struct kv_node {
    uint64_t hash;
    kv_value *val;
    uint16_t key_len;
    uint8_t height;
    uint8_t flags;            /* KV_NODE_DEAD */
    uint32_t born;            /* kv.gen when created (F1) */
    struct kv_node *next[];   /* height pointers, then the key bytes */
} kv_node;

struct kv {
    kv_node **table;          /* cap slots, NULL = empty */
    uint64_t cap;             /* power of two */
    uint64_t count;
    uint64_t value_bytes;
    kv_node *head[KV_SKIP_MAX];
    uint64_t applied;
    uint64_t partial_slot;    /* invariant 5 */
    uint32_t partial_done;
    uint64_t invalid_ops;     /* committed ops applied as no-ops */
    kv_sessions *sessions;
    kv_changed_fn changed;    /* kv_set_changed */
    void *changed_arg;
    uint64_t digest[4];       /* invariant 8, little-endian limbs */
    chain_hasher hasher;
    uint32_t gen;             /* generation of the view out, or the last */
    kv_view *view;            /* non-NULL while frozen */
    kv_node **dead;           /* DEAD nodes still in the skip list */
    size_t n_dead, cap_dead;
};

struct kv_view {
    kv *s;
    uint32_t gen;
    uint64_t applied, count, bytes;
    uint8_t digest[KV_DIGEST_BYTES];
    uint8_t *sessions;
    size_t sessions_len;
    const kv_node *cursor;    /* last node returned */
    int started;
};

int kv_key_cmp(const char *a, size_t alen, const char *b, size_t blen);
kv_node *kv_find_node(const kv *s, const char *key, size_t len);
/* Store v under key (the caller's reference moves in): 0 or -ENOMEM. */
int kv_map_put(kv *s, const char *key, size_t len, kv_value *v);
int kv_map_remove(kv *s, kv_node *n);
/* kv_map_remove of a node whose record hash `old` is known already. */
void kv_map_remove_hashed(kv *s, kv_node *n,
                          const uint8_t old[KV_DIGEST_BYTES]);
/* The record hash of a key's value (kv.h digest): 0 or -ENOMEM. */
int kv_rec_hash(kv *s, const char *key, size_t len, const kv_value *v,
                uint8_t out[KV_DIGEST_BYTES]);
/* The key bytes of a node (n->key_len of them). */
const char *kv_node_key(const kv_node *n);
/* The live nodes whose keys start with `prefix`, in byte order, into a
 * malloc'ed array (*out NULL when none): 0 or -ENOMEM. */
int kv_map_collect(const kv *s, const char *prefix, size_t len,
                   kv_node ***out, size_t *n);
/* Is there a live key that starts with `prefix` and is longer? */
bool kv_map_has_below(const kv *s, const char *prefix, size_t len);
/* One key a kv_map_replace inserts. */
typedef struct kv_map_add {
    const char *key;
    size_t len;
    kv_value *val;
} kv_map_add;
/* Remove the nodes rm[0..n_rm) and insert the keys add[0..n_add), which
 * are absent once those are removed, as one change: everything is
 * allocated first, so it returns 0 with every change made (the values'
 * references move in) or -ENOMEM with none (the caller keeps them). */
int kv_map_replace(kv *s, kv_node *const *rm, size_t n_rm,
                   const kv_map_add *add, size_t n_add);
/* Room for `more` DEAD nodes while a view is out: 0 or -ENOMEM. */
int kv_dead_reserve(kv *s, size_t more);

#endif
