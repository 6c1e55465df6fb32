/*
 * remote.h - a client-only mount: the FUSE adapter (fs/) over a remote
 * fs_backend that talks to the nodes' client ports (node/serve.h) with
 * the frames of net/wire_mount.h.  No backing directory, no vote: the
 * process is one more exactly-once session of the replicated store.
 *
 *   fs --submit/read_key/list/usage/read_barrier--> request (rid or seq)
 *      --DEALER--> the node it uses (preferably the leader)
 *   fs <--fs_key_changed (CHANGED), completions (DONE/ENTRY/PAGE/...)--
 *
 * Invariants:
 *   1. A completion runs exactly once, never inside the backend call that
 *      started it (they run when the answer arrives, from remote_run).
 *   2. Rule B2 (fs.h): the node sends CHANGED for every key an applied
 *      entry changes and then the answers, in the order it applied them,
 *      on one connection; after a switch to another node the client
 *      resumes the stream from the applied index of the last BEAT (the
 *      node replays the keys changed since, with their values now).  A
 *      node whose ring no longer reaches back reports a gap: the client
 *      lists every key and tells the mount what each holds (a key removed
 *      meanwhile is then missed; counted as stream_gaps in .status).
 *   3. Rule B3: reads take their read point on the node after the call;
 *      a read waits until every write made at release (answered) that
 *      was submitted before it was applied.
 *   4. A write keeps its seq across retries and switches, so it applies
 *      once (chain/sessions.c); the window of seqs in flight is
 *      REMOTE_WINDOW (the session table's per-client bound).
 *   5. Losing the node in use (no message for REMOTE_SILENT_MS) switches
 *      to the next one and sends every unanswered request again there.
 */
#ifndef PAXOSFS_NODE_REMOTE_H
#define PAXOSFS_NODE_REMOTE_H

#include <stdbool.h>
#include <stdint.h>

#include "../net/keys.h"
#include "../net/transport.h"

#define REMOTE_WINDOW 1024
#define REMOTE_SILENT_MS 1000
#define REMOTE_HELLO_MS 1000
#define REMOTE_RESEND_MS 2000
#define REMOTE_STATUS_MS 500
#define REMOTE_SYNC_MS 2000   /* .chain block reads wait this long */

typedef struct remote remote;

typedef struct remote_config {
    const net_peer_addr *servers;   /* the nodes' client ports */
    uint32_t n_servers;
    const keys *key;                /* NULL: no CURVE */
    const char *mountpoint;
    uint64_t commit_timeout_ms;     /* a write or read not answered by
                                       then fails with ETIMEDOUT */
    double attr_timeout_s, entry_timeout_s;
    bool fuse_debug, allow_other;
} remote_config;

/* Connect to the first node that answers (each tried for up to
 * REMOTE_SILENT_MS, all of them for up to `wait_ms`).  0 or a negative
 * errno with a message in err. */
int remote_open(const remote_config *cfg, uint64_t wait_ms, remote **out,
                char *err, size_t err_len);
int remote_mount(remote *r, char *err, size_t err_len);
/* Until SIGTERM/SIGINT or the mount goes away; 0. */
int remote_run(remote *r);
void remote_close(remote *r);

#endif
