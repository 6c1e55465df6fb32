/*
 * reads.h - the mount's reads of state, served by the node: the read half
 * of the fs_backend (fs/fs.h: read_key, list, usage).
 *
 *   mount --read_key/list/usage--> request (a copy of what it asks)
 *        client_read: a read point and this client's answered writes
 *        client_defer (FS_READ_APPLIED): the next client_flush
 *   <--done(result, what was asked, copied from the state)--
 *
 * A request waits in the client handle and, once it may be served, is
 * answered from the key-value state with what it asked for and nothing
 * more: a key's metadata and, if asked, a reference to its immutable
 * value; a page of keys with their metadata; the counts.  The map itself
 * never leaves; a client-only mount can get the same answers encoded.
 *
 * Invariants:
 *   1. A completion runs exactly once, never inside the call (client.h
 *      invariant 1).
 *   2. What a completion delivers is read from the state when it runs:
 *      every change applied before was told to the mount already
 *      (fs_key_changed from the state-machine host), none after (fs.h
 *      rule B2).
 *   3. A page holds at most FS_LIST_MAX keys, whatever the caller asks.
 */
#ifndef PAXOSFS_NODE_READS_H
#define PAXOSFS_NODE_READS_H

#include <stddef.h>
#include <stdint.h>

#include "../chain/kv.h"
#include "../fs/fs.h"
#include "client.h"

/* The metadata of a value, as the mount sees it. */
void reads_meta(const kv_value *v, fs_meta *m);

/* fs_backend.read_key, list and usage over the state `*state` holds when
 * the request is served (a snapshot install replaces the state while
 * requests wait: the pointer is read then, never kept), waiting in `c`.  0, or a negative errno (-EINVAL, -ENOMEM,
 * -EAGAIN: too many read points wait; then `done` never runs).  A key
 * read with `at` > 0 waits for that read point instead of asking for one
 * (a follower lease gave it: node/loop.c). */
int reads_key(client *c, kv *const *state, uint64_t now_ms, const char *key,
              size_t key_len, unsigned flags, uint64_t at, fs_read_fn done,
              void *arg);
/* px_depends_fn for a read of one key (consensus/reads.c invariant 9):
 * whether a batch holds an op that may change what the read finds: one
 * naming the key, a directory above it or a key below it (a rename moves
 * a directory with its tree, a directory's attributes follow what it
 * holds); an op that does not decode counts as touching it. */
typedef struct reads_dep {
    const char *key;
    size_t len;
} reads_dep;
bool reads_key_depends(void *arg, const uint8_t *data, uint32_t len);

int reads_list(client *c, kv *const *state, uint64_t now_ms, const char *after,
               size_t after_len, uint32_t max, unsigned flags,
               fs_list_fn done, void *arg);
int reads_usage(client *c, kv *const *state, fs_usage_fn done, void *arg);

#endif
