/*
 * kv.h - the key-value state machine of paxosfs.
 *
 * Every replica applies the same committed entries in slot order and so
 * holds the same map.  Nothing here reads a clock: the modification time of
 * a key is the time the leader stamped into the entry that changed it.
 *
 * Operations are encoded by kv_op_encode_* (the op bytes of a px_request)
 * and applied with kv_apply_entry, which also runs the exactly-once session
 * table (kv_sessions) so that a retried request is applied once.
 *
 * Keys: a path of names joined by '/' (the namespace, docs/design.md
 * "Namespace"): at most KV_MAX_PATH bytes, each name 1..KV_MAX_NAME bytes
 * without '/' or NUL, not "." or "..", and the first not one of the names
 * the mount shows itself (KV_NAME_CHAIN, KV_NAME_STATUS, KV_NAME_CLUSTER).
 * A file is
 * stored under its path ("a/b/c"), a directory under its path and a '/'
 * ("a/b/", empty value); a key other than a top-level one exists only
 * while the directory of its parent path does.  Every replica checks every
 * committed op against this rule as it applies it: an op naming another
 * key is a counted no-op (kv_invalid_ops) with the result -EINVAL or
 * -ENAMETOOLONG, so what a forged or buggy proposal carries never reaches
 * the map and every replica reaches the same state.  A chain written when
 * keys were single names replays to the same map: those ops mean what
 * they meant (a name has the root as its parent, which always exists).
 *
 * Op encoding, little-endian:
 *   offset size  meaning
 *   0      1     op: 1 PUT, 2 DEL, 3 APPEND, 4 RENAME, 5 COND, 6 MKDIR,
 *                7 RMDIR, 8 RENAMEX
 *   1      2     key length K (1..KV_MAX_PATH), a path without '/' at the
 *                end
 *   3      K     key bytes
 *   PUT, APPEND: 3+K 4 value length V (<= KV_MAX_VALUE), then V bytes
 *   RENAME:      3+K 2 new key length K2, then K2 bytes
 *   RENAMEX:     as RENAME, then 1 byte flags: KV_RENAME_NOREPLACE or
 *                KV_RENAME_EXCHANGE (not both)
 *   DEL, MKDIR, RMDIR: nothing more
 *   SETATTR:     3+K 1 mask (KV_ATTR_*, not 0; not both MTIME and
 *                MTIME_NOW), 4 uid, 4 gid, 4 permission bits (<= 07777),
 *                8 mtime_ms (0 unless MTIME); applies to the file or the
 *                directory at the path (ENOENT, ENOTDIR as any op)
 *
 * OWNER gives a key that the op it wraps creates (PUT, APPEND, MKDIR,
 * alone or under a COND) its owner and permission bits:
 *   0      1     10 (OWNER)
 *   1      4     uid
 *   5      4     gid
 *   9      4     permission bits (<= 07777)
 *   13     ...   the wrapped op (not OWNER, not SETATTR)
 * A key created without OWNER has mode 0 (nothing recorded: the mount
 * shows its defaults); writes and renames keep what a key has.
 *
 * COND guards one other op with a condition on a key, decided when the
 * entry is applied (so every replica decides the same):
 *   0      1     5 (COND)
 *   1      1     condition: 1 ABSENT (the key must not exist),
 *                2 IDENT (the key must hold the file with identity ARG),
 *                3 VERSION (the key's value must have version ARG)
 *   2      2     condition key length C (1..KV_MAX_KEY)
 *   4      C     condition key
 *   4+C    8     ARG (0 for ABSENT)
 *   12+C   ...   the guarded op: any but COND
 *
 * Results (int32, reported per request): 0, or a negative errno, all
 * decided on the state the op meets (so the same on every replica):
 *   a missing directory on the way to the key -ENOENT, a file on the way
 *   -ENOTDIR (every op, RENAME for both of its paths);
 *   PUT, APPEND of a key that is a directory -EISDIR;
 *   DEL of a missing key -ENOENT, of a directory -EISDIR;
 *   MKDIR of a key that exists (file or directory) -EEXIST;
 *   RMDIR of a missing directory -ENOENT, of a file -ENOTDIR, of a
 *   directory that holds anything -ENOTEMPTY;
 *   RENAME, RENAMEX as rename(2): a missing source -ENOENT; a directory
 *   moved into itself or below itself -EINVAL; a file over a directory
 *   -EISDIR, a directory over a file -ENOTDIR, over a directory that holds
 *   anything -ENOTEMPTY; the replaced target (a file, an empty directory)
 *   is removed; a directory moves with everything below it, all in this
 *   one op; NOREPLACE with an existing target -EEXIST; EXCHANGE swaps two
 *   existing keys of any kind (-ENOENT if either is missing; -EINVAL if
 *   one is below the other); source and target the same key: 0, nothing
 *   changes;
 *   APPEND growing past KV_MAX_VALUE -EFBIG; malformed op or a key
 *   outside the rule above -EINVAL (-ENAMETOOLONG for a long one);
 *   COND whose condition fails: -EEXIST (ABSENT: a file or a directory
 *   has that path) or -ESTALE (IDENT, VERSION, also when the key is
 *   missing); the guarded op is not applied.
 *
 * File identity: a value carries the identity of the file it belongs to.
 * A PUT or APPEND that creates a missing key gives it a new identity,
 * (slot << 24) | (1 + position of the request in its batch): unique and
 * never reused, the same on every replica.  PUT and APPEND of an existing
 * key keep its identity; RENAME moves it with the value; a key deleted and
 * created again is a new file.  The version is the slot of the last change.
 *
 * Values are immutable and reference-counted so that a reader holding one
 * keeps a consistent copy while newer entries replace the key.
 */
#ifndef PAXOSFS_KV_H
#define PAXOSFS_KV_H

#include <stdint.h>
#include <stdbool.h>
#include <stddef.h>

#include "../base/entry.h"
#include "../base/types.h"
#include "sessions.h"

#define KV_MAX_KEY LIMIT_KEY           /* bytes of a stored key (a directory's
                                          path and its '/') */
#define KV_MAX_PATH (LIMIT_KEY - 1)    /* bytes of a path (PATH_MAX less the
                                          NUL) */
#define KV_MAX_NAME LIMIT_NAME         /* bytes of one name in a path */
#define KV_NAME_CHAIN ".chain"         /* names the mount shows itself */
#define KV_NAME_STATUS ".status"
#define KV_NAME_CLUSTER ".cluster"
#define KV_MAX_VALUE LIMIT_VALUE       /* 4 MiB per value */

enum kv_op_type { KV_OP_PUT = 1, KV_OP_DEL = 2, KV_OP_APPEND = 3, KV_OP_RENAME = 4,
                  KV_OP_COND = 5, KV_OP_MKDIR = 6, KV_OP_RMDIR = 7,
                  KV_OP_RENAMEX = 8, KV_OP_SETATTR = 9, KV_OP_OWNER = 10 };
/* SETATTR mask */
#define KV_ATTR_OWNER 1u        /* set uid, gid and permission bits */
#define KV_ATTR_MTIME 2u        /* set mtime_ms to the op's time */
#define KV_ATTR_MTIME_NOW 4u    /* set mtime_ms to the entry's time */
#define KV_ATTR_MASK 7u
#define KV_MODE_PERM 07777u
#define KV_MODE_FILE 0100000u   /* S_IFREG */
#define KV_MODE_DIR 0040000u    /* S_IFDIR */
#define KV_RENAME_NOREPLACE 1u
#define KV_RENAME_EXCHANGE 2u
#define KV_RENAME_FLAGS (KV_RENAME_NOREPLACE | KV_RENAME_EXCHANGE)
enum kv_cond_kind { KV_COND_ABSENT = 1, KV_COND_IDENT = 2, KV_COND_VERSION = 3 };

typedef struct kv kv;

typedef struct kv_value {
    uint32_t refs;       /* managed by kv_value_ref/unref */
    uint32_t len;
    uint64_t mtime_ms;   /* commit time of the entry that wrote it, or the
                            time a SETATTR gave it */
    uint64_t version;    /* slot that wrote it */
    uint64_t changes;    /* committed changes of the key since it was
                            created: 1 at creation (PUT, APPEND, MKDIR),
                            + 1 for each PUT, APPEND, SETATTR and each
                            rename that moved it there (the keys below a
                            moved directory keep theirs); the same on
                            every replica; not in the digest (below) */
    uint64_t ident;      /* file identity (see above), never 0 */
    uint32_t uid, gid;   /* owner, when mode != 0 */
    uint32_t mode;       /* 0: no owner and mode recorded (a key written
                            before they were, or by an op without OWNER);
                            else S_IFREG or S_IFDIR and the permission
                            bits (07777) */
    uint8_t data[];      /* len bytes */
} kv_value;

/* Called once per request applied from an entry, in order. */
typedef void (*kv_result_fn)(void *arg, uint64_t client_id, uint64_t seq,
                             int32_t result, uint64_t slot);

/* Called for every key an applied op changed, right after the op (the
 * state then shows the change): the one stream of changes the node feeds
 * to the mount's caches.  `removed`: the key no longer exists.  Ops that
 * failed or were duplicates changed nothing and are not reported. */
typedef void (*kv_changed_fn)(void *arg, const char *key, size_t key_len,
                              bool removed);

kv *kv_create(void);

/* Install (or with NULL remove) the observer of changed keys. */
void kv_set_changed(kv *s, kv_changed_fn fn, void *arg);
void kv_destroy(kv *s);

/* Apply committed entry `e` (slot must be kv_applied_index + 1).  NOOP and
 * CONFIG entries only advance the index.  Calls `cb` for every request of a
 * BATCH entry, including duplicates (answered from the session table).
 * Returns 0, or -EINVAL if the slot is out of order or the batch is
 * malformed (nothing applied), or -ENOMEM. */
int kv_apply_entry(kv *s, const px_entry *e, kv_result_fn cb, void *arg);

uint64_t kv_applied_index(const kv *s);

/* Borrowed pointer to the current value of `key`, or NULL.  Valid until the
 * next kv_apply_entry; take a reference to keep it longer. */
const kv_value *kv_get(const kv *s, const char *key, size_t key_len);
void kv_value_ref(const kv_value *v);
void kv_value_unref(const kv_value *v);

/* Iterate keys in byte order that start with `prefix` (may be empty).
 * Stops early when `fn` returns non-zero and returns that value. */
typedef int (*kv_visit_fn)(void *arg, const char *key, size_t key_len,
                           const kv_value *v);
int kv_scan(const kv *s, const char *prefix, size_t prefix_len,
            kv_visit_fn fn, void *arg);

uint64_t kv_count(const kv *s);      /* number of keys */
/* Committed ops that were malformed or named a key outside the rule
 * (applied as no-ops), since kv_create: the same on every replica that
 * applied the same entries. */
uint64_t kv_invalid_ops(const kv *s);
uint64_t kv_bytes(const kv *s);      /* sum of value lengths */

/* Op encoders: return bytes written, or -ENOSPC / -EINVAL / -ENAMETOOLONG
 * / -EFBIG.  kv_op_size_* give the size needed. */
int64_t kv_op_encode_put(uint8_t *buf, size_t cap, const char *key,
                         size_t key_len, const uint8_t *val, uint32_t val_len);
int64_t kv_op_encode_append(uint8_t *buf, size_t cap, const char *key,
                            size_t key_len, const uint8_t *val,
                            uint32_t val_len);
int64_t kv_op_encode_del(uint8_t *buf, size_t cap, const char *key,
                         size_t key_len);
int64_t kv_op_encode_rename(uint8_t *buf, size_t cap, const char *from,
                            size_t from_len, const char *to, size_t to_len);
int64_t kv_op_encode_renamex(uint8_t *buf, size_t cap, const char *from,
                             size_t from_len, const char *to, size_t to_len,
                             uint8_t flags);
int64_t kv_op_encode_mkdir(uint8_t *buf, size_t cap, const char *key,
                           size_t key_len);
int64_t kv_op_encode_rmdir(uint8_t *buf, size_t cap, const char *key,
                           size_t key_len);
/* Wrap the encoded op `inner` (not itself a COND) in a condition on
 * `key`; `arg` is the identity or version it must have (0 for ABSENT). */
int64_t kv_op_encode_cond(uint8_t *buf, size_t cap, uint8_t kind,
                          const char *key, size_t key_len, uint64_t arg,
                          const uint8_t *inner, size_t inner_len);

int64_t kv_op_encode_setattr(uint8_t *buf, size_t cap, const char *key,
                             size_t key_len, uint8_t mask, uint32_t uid,
                             uint32_t gid, uint32_t perm, uint64_t mtime_ms);
/* Wrap the encoded op `inner` (PUT, APPEND, MKDIR or a COND of one) in
 * OWNER; `inner` may lie at the start of `buf`. */
int64_t kv_op_encode_owner(uint8_t *buf, size_t cap, uint32_t uid,
                           uint32_t gid, uint32_t perm, const uint8_t *inner,
                           size_t inner_len);

/* Decoded view of one op (pointers into the encoded bytes).  A COND op
 * decodes as the op it guards, with cond_kind set; an OWNER op as the op
 * it wraps, with has_owner set. */
typedef struct kv_op {
    uint8_t type;          /* PUT, DEL, APPEND, RENAME, MKDIR, RMDIR or
                              RENAMEX */
    uint8_t flags;         /* RENAMEX: KV_RENAME_* */
    uint8_t cond_kind;     /* 0, or enum kv_cond_kind */
    const char *cond_key;
    uint16_t cond_key_len;
    uint64_t cond_arg;
    const char *key;
    uint16_t key_len;
    const char *key2;      /* RENAME, RENAMEX target */
    uint16_t key2_len;
    const uint8_t *value;  /* PUT/APPEND */
    uint32_t value_len;
    bool has_owner;        /* OWNER: uid, gid, perm for a created key */
    uint8_t attr_mask;     /* SETATTR: KV_ATTR_* */
    uint32_t uid, gid, perm;
    uint64_t mtime_ms;     /* SETATTR with KV_ATTR_MTIME */
} kv_op;

int kv_op_decode(const uint8_t *buf, uint32_t len, kv_op *op);

/* 0 if `key` is a path an op may name (the key rule above, no '/' at the
 * end), else -EINVAL or -ENAMETOOLONG. */
int kv_path_check(const char *key, size_t len);

/* Add-only extensions. */

/* Encoded sizes (APPEND has the size of PUT). */
size_t kv_op_size_put(size_t key_len, uint32_t val_len);
size_t kv_op_size_del(size_t key_len);
size_t kv_op_size_rename(size_t from_len, size_t to_len);
size_t kv_op_size_renamex(size_t from_len, size_t to_len);
size_t kv_op_size_setattr(size_t key_len);
size_t kv_op_size_owner(size_t inner_len);
/* (MKDIR and RMDIR have the size of DEL.) */
size_t kv_op_size_cond(size_t key_len, size_t inner_len);

/* Snapshot of the whole state machine: applied index, every key with its
 * value, mtime and version, and the session table (kv_sessions_encode).
 * Layout and checks in chain/kv_snapshot.c (versioned header, zlib level 1
 * payload, CRC-32).  kv_snapshot_encode mallocs *out (free with free()).
 * kv_snapshot_decode replaces the contents of `s` only on success; on
 * garbage it returns -EINVAL (never crashes) and leaves `s` unchanged. */
int kv_snapshot_encode(const kv *s, uint8_t **out, size_t *out_len);
int kv_snapshot_decode(kv *s, const uint8_t *buf, size_t len);

/* State digest: a digest of the key-value state, kept current on every
 * change (O(1) per changed key, independent of the number of keys) and
 * equal on every replica that holds the same keys with the same values,
 * whatever the order and history that produced them:
 *     digest = sum over keys, modulo 2^256, of SHA-256(record)
 * with SHA-256 read as a little-endian number and
 *     record = "pxkvrec1" || u16 key length || key || u64 mtime_ms ||
 *              u64 version || u64 identity || u32 value length || value
 * for a key without owner and mode (mode 0), and for one with them
 *     record = "pxkvrec2" || u16 key length || key || u64 mtime_ms ||
 *              u64 version || u64 identity || u32 uid || u32 gid ||
 *              u32 mode || u32 value length || value
 * (integers little-endian); the digest of an empty map is 32 zero bytes
 * (little-endian).  It covers the keys and their values with their
 * metadata, not the session table or the applied index.  It detects a
 * replica whose state differs (a bug, a damaged disk); it is not meant to
 * resist someone who chooses many records to collide (the hash chain is
 * what makes history tamper-evident).  kv_digest_recompute hashes every
 * record again from scratch (for verification): 0 or -EIO. */
#define KV_DIGEST_BYTES 32
void kv_digest(const kv *s, uint8_t out[KV_DIGEST_BYTES]);
int kv_digest_recompute(kv *s, uint8_t out[KV_DIGEST_BYTES]);

/* Frozen views: the state as it was at one applied index, readable on
 * another thread while the owner goes on applying entries (a snapshot is
 * written from it without stalling writes).
 *   kv_freeze  (owner) O(1) but for a copy of the session table: -EBUSY
 *              while another view is out;
 *   kv_view_*  (one other thread at a time, or the owner) read the view:
 *              kv_view_next gives the keys in byte order (1 with *key,
 *              *key_len, *val filled, 0 at the end); the pointers stay
 *              valid until kv_thaw;
 *   kv_thaw    (owner) once the reader is done with the view.
 * Meanwhile the first change of a key the view holds costs a new node
 * (the old one stays for the view); nodes the view kept are reclaimed
 * after kv_thaw, a bounded number with each applied entry, or all at once
 * by kv_reclaim (and by the next kv_freeze).  kv_snapshot_decode refuses a
 * frozen map (-EBUSY); kv_destroy requires a thawed one. */
typedef struct kv_view kv_view;
int kv_freeze(kv *s, kv_view **out);
int kv_view_next(kv_view *v, const char **key, size_t *key_len,
                 const kv_value **val);
void kv_view_rewind(kv_view *v);          /* next gives the first key */
uint64_t kv_view_index(const kv_view *v);   /* applied index */
uint64_t kv_view_count(const kv_view *v);   /* keys */
uint64_t kv_view_bytes(const kv_view *v);   /* sum of value lengths */
void kv_view_digest(const kv_view *v, uint8_t out[KV_DIGEST_BYTES]);
/* kv_sessions_encode bytes of the session table at the view's index */
const uint8_t *kv_view_sessions(const kv_view *v, size_t *len);
void kv_thaw(kv *s, kv_view *v);
/* Reclaim up to `max` nodes kept for a thawed view; returns how many are
 * left.  kv_dead_nodes says how many are kept now. */
size_t kv_reclaim(kv *s, size_t max);
size_t kv_dead_nodes(const kv *s);

#endif /* PAXOSFS_KV_H */
