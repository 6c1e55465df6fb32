/*
 * health.h - whether this node can persist, and how it gets back to it.
 *
 * A node that cannot make its chain or acceptor store durable (a write or
 * fdatasync failed with EIO or ENOSPC, or no descriptor was left: EMFILE)
 * must not lead or vote: nothing it promises could be kept.  The node
 * runtime (node/loop.c) suspends its replica (px_suspend), fails the
 * writers on its mount, and hands the rest to this module: the state of
 * its storage for .status and the log, and the retries that bring it back.
 *
 *              health_fail               back-off passed
 *   HEALTHY -------------> FAILED ----------------------------> PROBING
 *      ^                    ^   ^                                  |
 *      |                    |   +---- probe failed: back-off x 2 --+
 *      |                    |                                      | probe
 *      |                    +-- health_fail: the reopen failed --+ | passed
 *      |                                                         | v
 *      +------------------- health_recovered ------------------ REOPEN
 *
 *   FAILED   since `since_ms`, because `what` failed with `err`; the next
 *            probe is due at `next_ms`.
 *   PROBING  the probe (health_probe_dir by default: create a file in the
 *            backing directory, take HEALTH_PROBE_FDS more descriptors,
 *            write HEALTH_PROBE_BYTES, fdatasync, remove it) runs on the
 *            health thread, so a sick disk never blocks the loop.
 *   REOPEN   the probe passed: health_poll answered true once; the owner
 *            re-verifies and reopens its storage, then reports
 *            health_recovered, or health_fail with what went wrong (back
 *            to FAILED, with a longer back-off).
 *
 * Invariants:
 *   1. Each transition to FAILED from HEALTHY and each recovery is logged
 *      once, on stderr and to syslog (the log file may be on the failed
 *      disk); the recovery line repeats the cause.  Failed retries are
 *      counted (`retries`, in .status) and logged only when their error
 *      changes, or once a minute.
 *   2. The back-off starts at HEALTH_BACKOFF_MIN_MS and doubles with every
 *      failed retry up to HEALTH_BACKOFF_MAX_MS.  A failure within
 *      HEALTH_FLAP_MS of a recovery goes on from the back-off reached
 *      before, so a disk that fails again right after it seemed to work
 *      is not retried faster and faster.
 *   3. At most one probe runs at a time, on the health thread; its result
 *      is taken by health_poll on the owner's thread, which owns all the
 *      rest of the state.
 *   4. Only the probe and the log lines do I/O; the decisions take the
 *      time from the caller, and the probe and the log can be replaced
 *      (tests drive the state machine with a fake clock).
 */
#ifndef PAXOSFS_HEALTH_H
#define PAXOSFS_HEALTH_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define HEALTH_BACKOFF_MIN_MS 100
#define HEALTH_BACKOFF_MAX_MS 2000
#define HEALTH_FLAP_MS 10000
#define HEALTH_RETRY_LOG_MS 60000       /* "still failing" at most this often */
#define HEALTH_PROBE_BYTES (1u << 20)   /* written and synced by a probe */
#define HEALTH_PROBE_FDS 16             /* spare descriptors a probe wants */
#define HEALTH_PROBE_NAME ".probe"      /* in the backing directory */

enum health_state { HEALTH_OK = 0, HEALTH_FAILED, HEALTH_PROBING,
                    HEALTH_REOPEN };

/* 0 when persisting works, else a negative errno. */
typedef int (*health_probe_fn)(const char *dir);
/* One log line (no newline); priority as for syslog(3). */
typedef void (*health_log_fn)(void *arg, int priority, const char *line);

struct worker;

typedef struct health {
    uint32_t node_id;
    char dir[512];                  /* where the probe writes */
    health_probe_fn probe;
    health_log_fn log;
    void *log_arg;
    struct worker *thread;          /* runs the probe */

    enum health_state state;
    int err;                        /* negative errno of the failure */
    char what[256];                 /* what failed */
    uint64_t since_ms;              /* when it failed */
    int retry_err;                  /* the last failed retry's errno */
    char retry_what[256];
    uint64_t retries;               /* failed retries since `since_ms` */
    uint64_t backoff_ms;            /* wait before the next probe */
    uint64_t next_ms;               /* next probe due */
    uint64_t logged_ms;             /* last "still failing" line */
    int logged_err;
    uint64_t failures, recoveries;  /* since start */
    uint64_t recovered_ms;          /* last recovery, 0 = none */
} health;

/* Set up for node `node_id` with backing directory `dir`; `probe` NULL
 * is health_probe_dir, `log` NULL writes stderr and syslog.  Starts the
 * health thread.  0 or a negative errno. */
int health_init(health *h, uint32_t node_id, const char *dir,
                health_probe_fn probe, health_log_fn log, void *log_arg);
/* Waits for a running probe. */
void health_fini(health *h);

bool health_ok(const health *h);

/* Persisting failed: `what` failed with `err` (negative errno) at `now`.
 * From HEALTHY: FAILED, logged.  From REOPEN (the owner's reopen failed)
 * or FAILED: a failed retry, counted. */
void health_fail(health *h, const char *what, int err, uint64_t now_ms);

/* Drive the retries: start a probe once the back-off passed, take its
 * result.  True exactly once per passed probe: the owner must now reopen
 * its storage and report health_recovered or health_fail. */
bool health_poll(health *h, uint64_t now_ms);

/* The owner reopened and re-verified its storage: HEALTHY, logged. */
void health_recovered(health *h, uint64_t now_ms);

/* The errno a call on this node's mount gets for failure `err`: the
 * disk is full (ENOSPC, EDQUOT) as it is, everything else (EIO, EMFILE,
 * ENFILE, EROFS, ...) as -EIO: the call was refused because this node
 * cannot store (nor apply) anything; .status and the log say why. */
int health_client_errno(int err);

/* .status: `"storage":{...}` (the state, what failed, errno and message,
 * for how long, retries, the next one, failures and recoveries). */
void health_status_json(const health *h, FILE *fp, uint64_t now_ms);

/* The default probe (see above): 0 or the negative errno of the step
 * that failed. */
int health_probe_dir(const char *dir);

#endif
