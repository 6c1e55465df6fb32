/*
 * inode.h - private to fs/: the table that gives keys stable inode numbers
 * for the lifetime of a mount.
 *
 * Invariants:
 *  1. An inode number is never reused while the mount lives (64-bit
 *     counter), so the kernel never confuses two keys.
 *  2. A record lives while the kernel holds lookups on it (nlookup > 0),
 *     a handle is open on it, or it is parked as a pending creation.
 *  3. Fixed numbers: 1 root, 2 .chain, 3 .status, 4 .chain/snapshot;
 *     blocks of .chain are
 *     FS_INO_BLOCK_BASE + index; keys start at FS_INO_FIRST_KEY.
 *  4. A record stands for one file: `ident` is the file identity of the
 *     committed key (chain/kv.h), 0 while the file was created on this
 *     mount and not committed yet.  At most one record has a given
 *     non-zero identity (the by-identity index is a map).
 *  5. A record is reachable by key iff it is not an orphan; an orphan is
 *     a file without a name on this mount (unlinked, renamed over, or
 *     moved away by an entry whose new name is not known yet).
 */
#ifndef PAXOSFS_FS_INODE_H
#define PAXOSFS_FS_INODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fs.h"

#define FS_INO_ROOT 1u
#define FS_INO_CHAIN 2u
#define FS_INO_STATUS 3u
#define FS_INO_SNAPSHOT 4u   /* .chain/snapshot */
#define FS_INO_SINCE 5u      /* .chain/since (stream.c) */
#define FS_INO_STREAM 6u     /* .chain/stream */
#define FS_INO_INCIDENTS 7u  /* .chain/incidents */
#define FS_INO_CLUSTER 8u    /* .cluster */
#define FS_INO_MEMBERS 9u    /* .cluster/members */
#define FS_INO_FIRST_KEY 16u
#define FS_INO_BLOCK_BASE (1ull << 56)
/* .chain/since/<n>: FS_INO_SINCE_BASE + n, n < FS_SINCE_MAX (above every
 * block's number, so every check that a number is not a key's holds) */
#define FS_INO_SINCE_BASE (FS_INO_BLOCK_BASE + (1ull << 55))
#define FS_SINCE_MAX (1ull << 54)

typedef struct fs_inode {
    uint64_t ino;
    uint64_t nlookup;        /* kernel references (lookup/create replies) */
    uint32_t open_count;     /* open handles */
    uint32_t key_len;
    char *key;               /* NUL-terminated; "" once orphaned */
    bool orphan;             /* not reachable by key any more */
    uint64_t ident;          /* committed file identity; 0 = not yet */
    fs_meta seen;            /* what its key held when last told (state.c):
                                the committed metadata of its file while
                                it is not an orphan (seen.ident == ident),
                                or, created here and not committed yet,
                                what the key holds (its first commit's
                                identity once that is applied) */
    bool lost;               /* orphaned by a rename whose new name could
                                not be stored (ENOMEM): commits fail */
    struct fs_ofile *of;     /* shared state of its writable opens, or NULL */
    uint64_t alias_seq;      /* a directory an entry moved: the notice
                                that drops its old name in the kernel
                                (names.c renumbers it while pending) */
    uint64_t cache_ident;    /* the committed value the kernel may hold */
    uint64_t cache_version;  /* pages of (read-only opens, fs/open.c) */
    bool has_creator;        /* created here: the owner and permissions its
                                first commit gives it (OWNER, chain/kv.h) */
    uint32_t c_uid, c_gid, c_perm;
    struct fs_inode *next_by_key;
    struct fs_inode *next_by_ino;
    struct fs_inode *next_by_ident;
} fs_inode;

typedef struct fs_inode_table fs_inode_table;

fs_inode_table *fs_inode_table_create(void);
void fs_inode_table_destroy(fs_inode_table *t);

/* The record for `key`, created if absent (NULL only on ENOMEM). */
fs_inode *fs_inode_get_or_add(fs_inode_table *t, const char *key,
                              size_t key_len);
fs_inode *fs_inode_by_key(fs_inode_table *t, const char *key, size_t key_len);
fs_inode *fs_inode_by_ino(fs_inode_table *t, uint64_t ino);
/* The record standing for file identity `ident` (non-zero), or NULL. */
fs_inode *fs_inode_by_ident(fs_inode_table *t, uint64_t ident);

/* Set the record's file identity (0 clears it).  A record that held
 * `ident` before loses it (invariant 4). */
void fs_inode_set_ident(fs_inode_table *t, fs_inode *in, uint64_t ident);

/* Call fn for every record (fn must not add or remove records). */
void fs_inode_each(fs_inode_table *t, void (*fn)(fs_inode *in, void *arg),
                   void *arg);

/* Point `in` at a new key (after a rename). 0 or -ENOMEM. */
int fs_inode_rekey(fs_inode_table *t, fs_inode *in, const char *key,
                   size_t key_len);

/* Detach `in` from its key (the key was deleted or renamed over): the
 * record stays reachable by inode number only until it is unused, and a
 * later creation of the same key gets a new inode number. */
void fs_inode_orphan(fs_inode_table *t, fs_inode *in);

/* Drop the record if nothing references it any more (no kernel lookup,
 * no open handle, no open-file state). */
void fs_inode_release_if_unused(fs_inode_table *t, fs_inode *in);

#endif
