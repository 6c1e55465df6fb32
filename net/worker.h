/*
 * worker.h - one background thread that runs one job at a time for the
 * loop thread: work that would block the loop for milliseconds (the
 * chain's periodic fdatasync) and whose result the loop collects later.
 *
 *   idle --worker_submit(fn, arg)--> running --fn returns--> done
 *    ^                                                        |
 *    +---------------- worker_take (wake fd readable) --------+
 *
 * Invariants:
 *   1. At most one job is submitted and not yet taken; worker_submit
 *      answers -EBUSY otherwise.
 *   2. fn runs on the worker thread only; its result reaches the loop
 *      through worker_take, after the wake fd became readable.
 *   3. worker_destroy waits for a running job to return.
 */
#ifndef PAXOSFS_WORKER_H
#define PAXOSFS_WORKER_H

#include <stdbool.h>

typedef struct worker worker;
typedef int (*worker_fn)(void *arg);

int worker_create(worker **out);
void worker_destroy(worker *w);

/* Readable once a job finished. */
int worker_wake_fd(const worker *w);

/* A job is submitted and not yet taken. */
bool worker_busy(worker *w);

/* Run fn(arg) on the worker thread.  0 or -EBUSY. */
int worker_submit(worker *w, worker_fn fn, void *arg);

/* The finished job's result into *rc: true, and the worker is idle again;
 * false while it runs or when none was submitted. */
bool worker_take(worker *w, int *rc);

#endif
