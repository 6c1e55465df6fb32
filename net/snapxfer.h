/*
 * snapxfer.h - snapshot transfers between nodes, both ends, over the
 * SNAPSHOT and SNAPSHOT_ASK frames (net/wire.h).  No sockets, no clock:
 * frames leave through edges.send, time comes with each call.
 *
 * The receiver drives a transfer: it asks its source for a window of
 * bytes from what it holds (SNAPSHOT_ASK), the source answers with chunks
 * read from its snapshot file (snap_reader), and the receiver asks for
 * the next window once the last one arrived, or again from where it is
 * after stall_ms without progress; after abandon_ms without progress the
 * transfer is dropped (its temporary file removed) and a new one starts
 * on the next snapxfer_fetch.  Each chunk goes through the snapshot
 * store's checked receiver (snapstore_recv_*): header fields, every
 * frame's CRC and finally the SHA-256, the lengths and the recomputed
 * state digest, before anything is installed.
 *
 * Invariants:
 *   1. Memory is bounded whatever a peer sends: one transfer received at
 *      a time, of at most max_total bytes (declared by its first chunk),
 *      from the one source asked; at most window_chunks * chunk_bytes
 *      asked for at once; one sending session per peer, each one open
 *      file and one chunk buffer, closed after idle_ms; an ask for more
 *      than a window is cut to a window.
 *   2. A chunk that was not asked for (no transfer, another source,
 *      another snapshot, a gap) is dropped, counted and logged (at most
 *      once per SNAPXFER_LOG_MS); damaged bytes end the transfer, with
 *      the offset and reason logged.
 *   3. A snapshot at or below the index the receiver asked to pass
 *      (min_index) is refused at its first chunk.
 */
#ifndef PAXOSFS_SNAPXFER_H
#define PAXOSFS_SNAPXFER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../chain/snap.h"
#include "wire.h"

#define SNAPXFER_CHUNK_BYTES (1u << 20)
#define SNAPXFER_WINDOW_CHUNKS 4u
#define SNAPXFER_MAX_TOTAL (UINT64_C(64) << 30)  /* 64 GiB */
#define SNAPXFER_STALL_MS 1000
#define SNAPXFER_ABANDON_MS 20000
#define SNAPXFER_IDLE_MS 30000
#define SNAPXFER_MAX_SESSIONS 16
#define SNAPXFER_LOG_MS 10000

typedef struct snapxfer_config {
    uint32_t self_id;
    uint64_t max_total;       /* 0: SNAPXFER_MAX_TOTAL */
    uint32_t chunk_bytes;     /* 0: SNAPXFER_CHUNK_BYTES (<= wire limit) */
    uint32_t window_chunks;   /* 0: SNAPXFER_WINDOW_CHUNKS */
    uint64_t stall_ms;        /* 0: SNAPXFER_STALL_MS */
    uint64_t abandon_ms;      /* 0: SNAPXFER_ABANDON_MS */
    uint64_t idle_ms;         /* 0: SNAPXFER_IDLE_MS */
} snapxfer_config;

typedef struct snapxfer_edges {
    void *arg;
    /* an encoded frame for `peer`; 0 or a negative errno (dropped) */
    int (*send)(void *arg, uint32_t peer, const uint8_t *frame, size_t len);
    /* one line of log (no newline); NULL: stderr */
    void (*log)(void *arg, const char *line);
} snapxfer_edges;

typedef struct snapxfer snapxfer;

/* `st` (the node's store) is used for both ends and must outlive x. */
int snapxfer_new(const snapxfer_config *cfg, const snapxfer_edges *edges,
                 snapstore *st, snapxfer **out);
void snapxfer_free(snapxfer *x);

/* ---------------------------------------------------------- receiving */

/* Fetch a snapshot newer than `min_index` from `from`: starts a transfer
 * (an ask for the source's newest) unless one is running from that
 * source; one from another source is kept while it progresses.  0 or a
 * negative errno. */
int snapxfer_fetch(snapxfer *x, uint32_t from, uint64_t min_index,
                   uint64_t now_ms);
/* A SNAPSHOT chunk from `from`.  1 when it completed a checked snapshot:
 * take it with snapxfer_take; 0 otherwise (taken, or dropped and
 * counted). */
int snapxfer_on_chunk(snapxfer *x, uint32_t from, const wire_snapshot *c,
                      uint64_t now_ms);
/* The completed snapshot (in the store now, as its newest): *state and
 * *info for the caller to install.  -ENOENT when none is waiting. */
int snapxfer_take(snapxfer *x, kv **state, snap_info *info);
/* Abandon the transfer in progress (if any). */
void snapxfer_cancel(snapxfer *x);

/* ------------------------------------------------------------ sending */

/* A SNAPSHOT_ASK from `from`: send the chunks asked for (cut to one
 * window), from the asked snapshot or, for index 0, the newest. */
void snapxfer_on_ask(snapxfer *x, uint32_t from, const wire_snapshot_ask *a,
                     uint64_t now_ms);

/* Timers of both ends: re-ask, abandon, close idle sessions. */
void snapxfer_tick(snapxfer *x, uint64_t now_ms);

typedef struct snapxfer_stats {
    /* receiving */
    bool active;              /* a transfer is running */
    uint32_t source;
    uint64_t index;           /* of the snapshot coming (0: not known) */
    uint64_t received, total; /* bytes */
    uint64_t started_ms;
    uint64_t completed;       /* transfers that ended in a snapshot */
    uint64_t failed;          /* damaged, refused or abandoned */
    uint64_t dropped;         /* chunks dropped (invariant 2) */
    uint64_t asks_sent;
    uint64_t bytes_received;
    /* sending */
    uint32_t sessions;        /* open now */
    uint64_t asks_served;
    uint64_t asks_refused;    /* no snapshot, or the asked one is gone */
    uint64_t chunks_sent, bytes_sent;
    uint64_t serve_us;        /* time spent answering asks (the loop's) */
    uint64_t serve_us_max;    /* the longest answer to one ask */
} snapxfer_stats;

void snapxfer_get_stats(const snapxfer *x, snapxfer_stats *st);

#endif
