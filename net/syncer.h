/*
 * syncer.h - group commit of the acceptor store (chain/chain.h): the
 * persist ids of replica outputs whose records are buffered in the store,
 * then written to its file as numbered write generations, then made
 * durable by one fdatasync that covers every generation written before it.
 *
 *   syncer_note(id)          buffered (acceptor_put_* done)
 *      | syncer_flush        written: acceptor_write, generation g
 *      v
 *   inline: fdatasync here   or   the sync thread: fdatasync covering the
 *      |                          newest generation written when it
 *      |                          starts; starts again at once if more was
 *      v                          written meanwhile (no round trip through
 *   syncer_take(ids)  <-----------the loop); wake fd readable
 *
 * Invariants:
 *   1. syncer_take returns a persist id only after an fdatasync that
 *      started after its records were written has returned 0; ids come
 *      out in the order they were noted (they increase), each once.
 *   2. A failed fdatasync is sticky: nothing is reported durable after it
 *      (syncer_take answers the error from then on), since the kernel may
 *      have dropped the pages that failed.
 *   3. The acceptor store is written only by the caller's thread; the sync
 *      thread calls acceptor_datasync alone (chain.h allows that), and
 *      syncer_idle is true only when no fdatasync runs, so the caller may
 *      then compact or close the store.
 */
#ifndef PAXOSFS_SYNCER_H
#define PAXOSFS_SYNCER_H

#include <stdbool.h>
#include <stdint.h>

#include "../chain/chain.h"

typedef struct syncer syncer;

/* Start the sync thread for `store`.  0 or negative errno. */
int syncer_create(acceptor_store *store, syncer **out);

/* Without a thread (the simulator drives the disk): an fdatasync that
 * would start on the thread runs at once on the caller's thread, through
 * chain_io, between run(arg, kind, true) and run(arg, kind, false) (so a
 * fake disk can tell its calls apart); it counts as done only once the
 * owner calls syncer_complete, which starts the next one at once if a
 * newer generation was written meanwhile (as the thread does).  There is
 * no wake fd (-1). */
typedef void (*syncer_run_fn)(void *arg, int kind, bool begin);
int syncer_create_manual(acceptor_store *store, syncer_run_fn run,
                         void *arg, int kind, syncer **out);

/* Manual mode: the fdatasync that ran last is done. */
void syncer_complete(syncer *s);

/* Wait for a running fdatasync, stop the thread and free. */
void syncer_destroy(syncer *s);

/* Readable after the sync thread finished an fdatasync (poll it);
 * syncer_ack_wake clears it.  -1 in manual mode. */
int syncer_wake_fd(const syncer *s);
void syncer_ack_wake(syncer *s);

/* The records of persist id `id` are buffered in the store. */
int syncer_note(syncer *s, uint64_t id);

/* Is anything buffered, or written and not yet taken? */
bool syncer_pending(const syncer *s);

/* No fdatasync runs and everything written is durable. */
bool syncer_idle(syncer *s);

/* Write what is buffered as a new generation, then make it durable: at
 * once on this thread when `inline_sync` (the caller checked syncer_idle),
 * else through the sync thread.  Nothing buffered: no new generation (what
 * was written is covered already).  0 or the negative errno of the failed
 * write or inline fdatasync. */
int syncer_flush(syncer *s, bool inline_sync);

/* Move up to `max` persist ids now durable into ids[] (invariant 1) and
 * return how many, or the negative errno of a failed fdatasync. */
int syncer_take(syncer *s, uint64_t *ids, uint32_t max);

/* Start over with `store` (the node reopened its acceptor store after a
 * failure, net/health.h): stops the sync thread (waiting for an fdatasync
 * in progress on the old store), forgets every persist id buffered or
 * written and the sticky failure (invariant 2 held for the old store,
 * which the caller closes afterwards), and starts the thread again.  The
 * wake fd stays the same.  In manual mode there is no thread: a sync
 * started and not yet completed is forgotten (syncer_complete after the
 * reset does nothing).  0 or a negative errno (no thread: the caller must
 * not use the syncer). */
int syncer_reset(syncer *s, acceptor_store *store);

/* fdatasyncs done so far (on the thread and inline): with the number of
 * writes, it shows how many each group commit covered. */
uint64_t syncer_syncs(syncer *s);

#endif
