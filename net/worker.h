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

/* Without a thread (the simulator drives the disk): worker_submit runs
 * fn at once on the caller's thread, between run(arg, kind, true) and
 * run(arg, kind, false); the job counts as finished (worker_take) only
 * once the owner calls worker_complete.  There is no wake fd (-1). */
typedef void (*worker_run_fn)(void *arg, int kind, bool begin);
int worker_create_manual(worker_run_fn run, void *arg, int kind,
                         worker **out);
void worker_complete(worker *w);

/* Readable once a job finished (-1 in manual mode). */
int worker_wake_fd(const worker *w);

/* A job is submitted and not yet taken. */
bool worker_busy(worker *w);

/* Run fn(arg) on the worker thread.  0 or -EBUSY. */
int worker_submit(worker *w, worker_fn fn, void *arg);

/* The finished job's result into *rc: true, and the worker is idle again;
 * false while it runs or when none was submitted. */
bool worker_take(worker *w, int *rc);

#endif
