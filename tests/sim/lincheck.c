/*
 * lincheck.c - owns the linearizability search over per-key histories
 * (see lincheck.h for the model).
 *
 * The history of one key becomes a doubly linked list of call and return
 * events ordered by time; at equal times calls come first, so operations
 * that touch at the same millisecond count as concurrent (a tie can never
 * produce a false violation).  The search (Wing & Gong, with Lowe's
 * memoisation of visited (linearized set, state) pairs) walks the list:
 *
 *   call of op X   -> try to linearize X now: apply it to the model state;
 *                     if its answer matches and (linearized + X, new state)
 *                     was never seen, remove X's call and return from the
 *                     list ("lift"), push (X, old state), restart at head;
 *                     otherwise move on to the next event.
 *   return of op Y -> Y had to be linearized before this point and is not:
 *                     pop the last choice, put it back ("unlift"), and try
 *                     the event after it.  Empty stack = not linearizable.
 *
 * Invariants:
 *   1. A lifted op's bit is set in `linearized` exactly while its frame is
 *      on the stack.
 *   2. The memo holds every (linearized set, state) pair already explored;
 *      reaching one again cannot succeed where it failed before.
 *   3. `steps` never exceeds the budget: past it the answer is
 *      LIN_UNDECIDED, so a pathological history cannot hang the simulator.
 *   4. Model states are interned: equal (present, bytes) pairs share one id,
 *      so a memo key is (bitset, state id).
 */
#include "lincheck.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define LIN_DEFAULT_BUDGET 1000000u

/* ------------------------------------------------------ interned states */

typedef struct lin_state {
    bool present;
    uint32_t len;
    uint8_t *data;
    uint64_t hash;
} lin_state;

typedef struct lin_states {
    lin_state *v;
    uint32_t n, cap;
    uint32_t *slots;       /* open addressing: index + 1, 0 = empty */
    uint32_t n_slots;      /* power of two */
} lin_states;

static uint64_t lin_hash_bytes(uint64_t h, const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static uint64_t lin_state_hash(bool present, const uint8_t *a, uint32_t alen,
                               const uint8_t *b, uint32_t blen)
{
    uint64_t h = 0xcbf29ce484222325ull ^ (present ? 0x9e37u : 0x51u);
    h = lin_hash_bytes(h, a, alen);
    h = lin_hash_bytes(h, b, blen);
    return h ^ (h >> 29);
}

static int lin_states_grow(lin_states *s)
{
    uint32_t n_slots = s->n_slots ? s->n_slots * 2 : 64;
    uint32_t *slots = calloc(n_slots, sizeof(*slots));
    if (!slots)
        return -ENOMEM;
    for (uint32_t i = 0; i < s->n; i++) {
        uint32_t j = (uint32_t)s->v[i].hash & (n_slots - 1);
        while (slots[j])
            j = (j + 1) & (n_slots - 1);
        slots[j] = i + 1;
    }
    free(s->slots);
    s->slots = slots;
    s->n_slots = n_slots;
    return 0;
}

/* Intern the state (present, a || b).  Returns its id or a negative errno. */
static int64_t lin_states_intern(lin_states *s, bool present,
                                 const uint8_t *a, uint32_t alen,
                                 const uint8_t *b, uint32_t blen)
{
    if (!present)
        alen = blen = 0;
    uint64_t h = lin_state_hash(present, a, alen, b, blen);
    if ((s->n + 1) * 2 > s->n_slots) {
        int rc = lin_states_grow(s);
        if (rc < 0)
            return rc;
    }
    uint32_t j = (uint32_t)h & (s->n_slots - 1);
    while (s->slots[j]) {
        const lin_state *st = &s->v[s->slots[j] - 1];
        if (st->hash == h && st->present == present &&
            st->len == alen + blen &&
            (alen == 0 || memcmp(st->data, a, alen) == 0) &&
            (blen == 0 || memcmp(st->data + alen, b, blen) == 0))
            return s->slots[j] - 1;
        j = (j + 1) & (s->n_slots - 1);
    }
    if (s->n == s->cap) {
        uint32_t cap = s->cap ? s->cap * 2 : 32;
        lin_state *v = realloc(s->v, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        s->v = v;
        s->cap = cap;
    }
    lin_state *st = &s->v[s->n];
    st->present = present;
    st->len = alen + blen;
    st->hash = h;
    st->data = malloc(st->len ? st->len : 1);
    if (!st->data)
        return -ENOMEM;
    if (alen)
        memcpy(st->data, a, alen);
    if (blen)
        memcpy(st->data + alen, b, blen);
    s->slots[j] = s->n + 1;
    return s->n++;
}

static void lin_states_free(lin_states *s)
{
    for (uint32_t i = 0; i < s->n; i++)
        free(s->v[i].data);
    free(s->v);
    free(s->slots);
    memset(s, 0, sizeof(*s));
}

/* ----------------------------------------------------------------- memo */

typedef struct lin_memo {
    uint32_t words;        /* 64-bit words per bitset */
    uint64_t *keys;        /* n x (1 + words): state id, then bitset */
    uint64_t n, cap;
    uint64_t *slots;       /* index + 1, 0 = empty */
    uint64_t n_slots;
} lin_memo;

static uint64_t lin_memo_hash(const uint64_t *key, uint32_t words)
{
    uint64_t h = 0x9e3779b97f4a7c15ull;
    for (uint32_t i = 0; i <= words; i++) {
        h ^= key[i];
        h *= 0xff51afd7ed558ccdull;
        h ^= h >> 32;
    }
    return h;
}

static int lin_memo_grow(lin_memo *m)
{
    uint64_t n_slots = m->n_slots ? m->n_slots * 2 : 1024;
    uint64_t *slots = calloc(n_slots, sizeof(*slots));
    if (!slots)
        return -ENOMEM;
    for (uint64_t i = 0; i < m->n; i++) {
        uint64_t j = lin_memo_hash(&m->keys[i * (1 + m->words)], m->words) &
                     (n_slots - 1);
        while (slots[j])
            j = (j + 1) & (n_slots - 1);
        slots[j] = i + 1;
    }
    free(m->slots);
    m->slots = slots;
    m->n_slots = n_slots;
    return 0;
}

/* Insert (state, bits).  Returns 1 if new, 0 if already present, or a
 * negative errno. */
static int lin_memo_insert(lin_memo *m, uint64_t state, const uint64_t *bits)
{
    uint32_t w = m->words;
    if ((m->n + 1) * 2 > m->n_slots) {
        int rc = lin_memo_grow(m);
        if (rc < 0)
            return rc;
    }
    if (m->n == m->cap) {
        uint64_t cap = m->cap ? m->cap * 2 : 256;
        uint64_t *keys = realloc(m->keys, cap * (1 + w) * sizeof(*keys));
        if (!keys)
            return -ENOMEM;
        m->keys = keys;
        m->cap = cap;
    }
    uint64_t *cand = &m->keys[m->n * (1 + w)];
    cand[0] = state;
    memcpy(cand + 1, bits, w * sizeof(*bits));
    uint64_t j = lin_memo_hash(cand, w) & (m->n_slots - 1);
    while (m->slots[j]) {
        const uint64_t *k = &m->keys[(m->slots[j] - 1) * (1 + w)];
        if (memcmp(k, cand, (1 + w) * sizeof(*k)) == 0)
            return 0;
        j = (j + 1) & (m->n_slots - 1);
    }
    m->slots[j] = ++m->n;
    return 1;
}

static void lin_memo_free(lin_memo *m)
{
    free(m->keys);
    free(m->slots);
    memset(m, 0, sizeof(*m));
}

/* ------------------------------------------------------------ the search */

typedef struct lin_entry {
    uint64_t time_ms;
    bool is_call;
    uint32_t op;                 /* index into the key's op list */
    struct lin_entry *match;     /* call <-> return */
    struct lin_entry *prev, *next;
} lin_entry;

typedef struct lin_frame {
    lin_entry *call;
    uint32_t state;
} lin_frame;

static int lin_entry_cmp(const void *pa, const void *pb)
{
    const lin_entry *a = pa, *b = pb;
    if (a->time_ms != b->time_ms)
        return a->time_ms < b->time_ms ? -1 : 1;
    if (a->is_call != b->is_call)
        return a->is_call ? -1 : 1;      /* ties are concurrent */
    return a->op < b->op ? -1 : (a->op > b->op);
}

static bool lin_pending(const lin_op *op)
{
    return op->return_ms == LIN_RETURN_PENDING;
}

/* Apply `op` to state `cur`.  Returns the new state id, -1 when the op's
 * recorded answer contradicts the state, or a negative errno below -1
 * (shifted: -(errno) - 1). */
static int64_t lin_apply(lin_states *s, uint32_t cur, const lin_op *op)
{
    const lin_state *st = &s->v[cur];
    bool pending = lin_pending(op);
    int64_t id;
    switch (op->type) {
    case LIN_PUT:
        if (!pending && op->result != 0)
            return -1;
        id = lin_states_intern(s, true, op->input, op->input_len, NULL, 0);
        break;
    case LIN_APPEND: {
        if (!pending && op->result != 0)
            return -1;
        /* interning may move s->v: copy what we need first */
        bool present = st->present;
        uint32_t len = present ? st->len : 0;
        uint8_t *copy = NULL;
        if (len) {
            copy = malloc(len);
            if (!copy)
                return -ENOMEM - 1;
            memcpy(copy, st->data, len);
        }
        id = lin_states_intern(s, true, copy, len, op->input, op->input_len);
        free(copy);
        break;
    }
    case LIN_DEL:
        if (st->present) {
            if (!pending && op->result != 0)
                return -1;
            id = lin_states_intern(s, false, NULL, 0, NULL, 0);
        } else {
            if (!pending && op->result != -ENOENT)
                return -1;
            return cur;
        }
        break;
    case LIN_GET:
        if (pending)
            return cur;
        if (op->found != st->present)
            return -1;
        if (st->present && (op->output_len != st->len ||
                            (st->len && memcmp(op->output, st->data,
                                               st->len) != 0)))
            return -1;
        return cur;
    default:
        return -EINVAL - 1;
    }
    if (id < 0)
        return id - 1;
    return id;
}

static void lin_lift(lin_entry *call)
{
    call->prev->next = call->next;
    if (call->next)
        call->next->prev = call->prev;
    lin_entry *ret = call->match;
    ret->prev->next = ret->next;
    if (ret->next)
        ret->next->prev = ret->prev;
}

static void lin_unlift(lin_entry *call)
{
    lin_entry *ret = call->match;
    ret->prev->next = ret;
    if (ret->next)
        ret->next->prev = ret;
    call->prev->next = call;
    if (call->next)
        call->next->prev = call;
}

/* Check one key's ops (pointers into the caller's array). */
static int lin_check_key(const lin_op **ops, uint32_t n, uint64_t budget,
                         uint64_t *steps_used)
{
    int rc = LIN_OK;
    lin_states states = {0};
    lin_memo memo = {0};
    lin_entry *ev = calloc((size_t)n * 2 + 1, sizeof(*ev));
    lin_frame *stack = calloc(n ? n : 1, sizeof(*stack));
    uint32_t words = (n + 63) / 64;
    uint64_t *bits = calloc(words ? words : 1, sizeof(*bits));
    if (!ev || !stack || !bits) {
        rc = -ENOMEM;
        goto free_all;
    }
    memo.words = words;

    lin_entry *list = ev + 1;
    uint32_t completed_left = 0;
    for (uint32_t i = 0; i < n; i++) {
        list[2 * i] = (lin_entry){.time_ms = ops[i]->invoke_ms,
                                  .is_call = true, .op = i};
        list[2 * i + 1] = (lin_entry){.time_ms = ops[i]->return_ms,
                                      .is_call = false, .op = i};
        if (!lin_pending(ops[i]))
            completed_left++;
    }
    qsort(list, (size_t)n * 2, sizeof(*list), lin_entry_cmp);
    /* link calls to returns: remember each op's call position first */
    uint32_t *call_at = calloc(n ? n : 1, sizeof(*call_at));
    if (!call_at) {
        rc = -ENOMEM;
        goto free_all;
    }
    for (uint32_t i = 0; i < 2 * n; i++)
        if (list[i].is_call)
            call_at[list[i].op] = i;
    for (uint32_t i = 0; i < 2 * n; i++) {
        if (!list[i].is_call) {
            lin_entry *call = &list[call_at[list[i].op]];
            call->match = &list[i];
            list[i].match = call;
        }
    }
    free(call_at);
    lin_entry *head = ev;           /* sentinel */
    head->next = n ? &list[0] : NULL;
    for (uint32_t i = 0; i < 2 * n; i++) {
        list[i].prev = i ? &list[i - 1] : head;
        list[i].next = i + 1 < 2 * n ? &list[i + 1] : NULL;
    }

    int64_t st0 = lin_states_intern(&states, false, NULL, 0, NULL, 0);
    if (st0 < 0) {
        rc = (int)st0;
        goto free_all;
    }
    uint32_t state = (uint32_t)st0;
    uint32_t depth = 0;
    uint64_t steps = 0;
    lin_entry *entry = head->next;
    while (completed_left > 0) {
        if (++steps > budget) {
            rc = LIN_UNDECIDED;
            break;
        }
        if (entry && entry->is_call) {
            const lin_op *op = ops[entry->op];
            int64_t next = lin_apply(&states, state, op);
            if (next < -1) {
                rc = (int)(next + 1);
                break;
            }
            if (next >= 0) {
                uint32_t b = entry->op;
                bits[b / 64] |= 1ull << (b % 64);
                int fresh = lin_memo_insert(&memo, (uint64_t)next, bits);
                if (fresh < 0) {
                    rc = fresh;
                    break;
                }
                if (fresh) {
                    stack[depth++] = (lin_frame){.call = entry, .state = state};
                    state = (uint32_t)next;
                    lin_lift(entry);
                    if (!lin_pending(op))
                        completed_left--;
                    entry = head->next;
                    continue;
                }
                bits[b / 64] &= ~(1ull << (b % 64));
            }
            entry = entry->next;
            continue;
        }
        /* a return (or the end): backtrack */
        if (depth == 0) {
            rc = LIN_VIOLATION;
            break;
        }
        lin_frame f = stack[--depth];
        state = f.state;
        uint32_t b = f.call->op;
        bits[b / 64] &= ~(1ull << (b % 64));
        lin_unlift(f.call);
        if (!lin_pending(ops[b]))
            completed_left++;
        entry = f.call->next;
    }
    *steps_used += steps > budget ? budget : steps;

free_all:
    free(bits);
    free(stack);
    free(ev);
    lin_memo_free(&memo);
    lin_states_free(&states);
    return rc;
}

static int lin_key_cmp(const void *pa, const void *pb)
{
    const lin_op *a = *(const lin_op *const *)pa;
    const lin_op *b = *(const lin_op *const *)pb;
    if (a->key != b->key)
        return a->key < b->key ? -1 : 1;
    return a < b ? -1 : (a > b);
}

int lin_check(const lin_op *ops, size_t n, uint64_t budget_steps,
              lin_report *report)
{
    lin_report local = {0};
    if (!report)
        report = &local;
    memset(report, 0, sizeof(*report));
    if (n > UINT32_MAX / 4 || (n && !ops))
        return -EINVAL;
    if (budget_steps == 0)
        budget_steps = LIN_DEFAULT_BUDGET;
    for (size_t i = 0; i < n; i++) {
        if (ops[i].type < LIN_PUT || ops[i].type > LIN_GET)
            return -EINVAL;
        if (ops[i].return_ms < ops[i].invoke_ms)
            return -EINVAL;
    }
    const lin_op **byk = malloc((n ? n : 1) * sizeof(*byk));
    if (!byk)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        byk[i] = &ops[i];
    qsort(byk, n, sizeof(*byk), lin_key_cmp);

    int verdict = LIN_OK;
    for (size_t lo = 0; lo < n;) {
        size_t hi = lo;
        while (hi < n && byk[hi]->key == byk[lo]->key)
            hi++;
        int rc = lin_check_key(byk + lo, (uint32_t)(hi - lo), budget_steps,
                               &report->steps);
        report->keys++;
        if (rc < 0) {
            verdict = rc;
            report->bad_key = byk[lo]->key;
            break;
        }
        if (rc == LIN_VIOLATION) {
            verdict = LIN_VIOLATION;
            report->bad_key = byk[lo]->key;
            break;
        }
        if (rc == LIN_UNDECIDED && verdict == LIN_OK) {
            verdict = LIN_UNDECIDED;
            report->bad_key = byk[lo]->key;
        }
        lo = hi;
    }
    free(byk);
    return verdict;
}

const char *lin_verdict_name(int verdict)
{
    switch (verdict) {
    case LIN_OK:
        return "linearizable";
    case LIN_VIOLATION:
        return "NOT linearizable";
    case LIN_UNDECIDED:
        return "undecided (budget exhausted)";
    default:
        return "error";
    }
}
