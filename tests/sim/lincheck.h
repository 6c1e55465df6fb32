/*
 * lincheck.h - linearizability checker for paxosfs client histories.
 *
 * A history is a list of completed (or still pending) operations on a
 * key-value map, each with the virtual time it was invoked and the time
 * its answer came back.  The map is checked one key at a time: a history
 * is linearizable iff every per-key sub-history is (P-compositionality,
 * Herlihy & Wing), which keeps each search small.
 *
 * Per-key model (the semantics of chain/kv.h):
 *   PUT v     -> state = v,                  result 0
 *   APPEND v  -> state = (state or "") + v,  result 0
 *   DEL       -> absent: result -ENOENT; present: state = absent, result 0
 *   GET       -> returns (found, value) equal to the state
 *
 * The search is the Wing & Gong backtracking search with Lowe's
 * memoisation of (set of linearized ops, state) pairs.  It is bounded by a
 * step budget: beyond it the verdict is LIN_UNDECIDED, never a hang.
 */
#ifndef PAXOSFS_SIM_LINCHECK_H
#define PAXOSFS_SIM_LINCHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum lin_op_type { LIN_PUT = 1, LIN_APPEND = 2, LIN_DEL = 3, LIN_GET = 4 };

enum lin_verdict {
    LIN_OK = 0,            /* linearizable */
    LIN_VIOLATION = 1,     /* no linearization exists */
    LIN_UNDECIDED = 2,     /* step budget exhausted */
};

#define LIN_RETURN_PENDING UINT64_MAX /* return_ms of an unanswered op */

typedef struct lin_op {
    uint32_t key;            /* any id; ops are grouped by it */
    uint8_t type;            /* enum lin_op_type */
    const uint8_t *input;    /* PUT/APPEND value */
    uint32_t input_len;
    int32_t result;          /* PUT/APPEND/DEL: 0 or -ENOENT */
    bool found;              /* GET: key present */
    const uint8_t *output;   /* GET: value read when found */
    uint32_t output_len;
    uint64_t invoke_ms;
    uint64_t return_ms;      /* LIN_RETURN_PENDING: may or may not apply */
} lin_op;

typedef struct lin_report {
    uint32_t bad_key;        /* first key found non-linearizable/undecided */
    uint64_t steps;          /* search steps used, all keys */
    uint32_t keys;           /* keys checked */
} lin_report;

/* Check `n` ops (any order, any keys).  `budget_steps` bounds the search
 * per key (0 = a default of one million).  Returns an enum lin_verdict
 * (violation wins over undecided), or a negative errno (-ENOMEM, -EINVAL
 * for an unknown op type or return before invoke).  `report` may be NULL. */
int lin_check(const lin_op *ops, size_t n, uint64_t budget_steps,
              lin_report *report);

const char *lin_verdict_name(int verdict);

#endif /* PAXOSFS_SIM_LINCHECK_H */
