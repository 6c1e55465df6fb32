/*
 * kv_apply.c - owns applying committed entries to the key-value state:
 * batches of requests through the exactly-once session table, each op
 * checked (kv_key_check) and applied, its result reported, and every key
 * it changed told to the observer (kv_set_changed).  kv.c's header
 * comment has the invariants (notably 5: a batch interrupted by a lack of
 * memory resumes where it stopped).
 */
#include "kv_map.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* --------------------------------------------------------- applying */

/* Apply one decoded, valid op.  Returns the op's result (0 or a negative
 * errno that is part of the replicated outcome), or KV_APPLY_NOMEM when
 * nothing was changed for lack of memory.  `ident` is the identity a key
 * created by this op gets (kv.h). */
#define KV_APPLY_NOMEM INT32_MIN
#define KV_IDENT_SLOT_SHIFT 24

/* The guard of a COND op: 0 if it holds, else the op's result. */
static int32_t check_cond(const kv *s, const kv_op *op)
{
    const kv_node *c = kv_find_node(s, op->cond_key, op->cond_key_len);
    switch (op->cond_kind) {
    case KV_COND_ABSENT:
        return c ? -EEXIST : 0;
    case KV_COND_IDENT:
        return c && c->val->ident == op->cond_arg ? 0 : -ESTALE;
    case KV_COND_VERSION:
        return c && c->val->version == op->cond_arg ? 0 : -ESTALE;
    default:
        return -EINVAL;
    }
}

static int32_t apply_op(kv *s, const kv_op *op, uint64_t slot,
                        uint64_t time_ms, uint64_t ident)
{
    kv_node *n = kv_find_node(s, op->key, op->key_len);
    kv_value *v;

    if (op->cond_kind) {
        int32_t rc = check_cond(s, op);
        if (rc)
            return rc;
    }
    switch (op->type) {
    case KV_OP_PUT:
        v = kv_value_new(op->value, op->value_len, NULL, 0, time_ms, slot,
                         n ? n->val->ident : ident);
        if (!v)
            return KV_APPLY_NOMEM;
        return kv_map_put(s, op->key, op->key_len, v) ? KV_APPLY_NOMEM : 0;
    case KV_OP_APPEND:
        if (n && (uint64_t)n->val->len + op->value_len > KV_MAX_VALUE)
            return -EFBIG;
        v = kv_value_new(n ? n->val->data : NULL, n ? n->val->len : 0,
                         op->value, op->value_len, time_ms, slot,
                         n ? n->val->ident : ident);
        if (!v)
            return KV_APPLY_NOMEM;
        return kv_map_put(s, op->key, op->key_len, v) ? KV_APPLY_NOMEM : 0;
    case KV_OP_DEL:
        if (!n)
            return -ENOENT;
        return kv_map_remove(s, n) ? KV_APPLY_NOMEM : 0;
    case KV_OP_RENAME:
        if (!n)
            return -ENOENT;
        if (kv_key_cmp(op->key, op->key_len, op->key2, op->key2_len) == 0)
            return 0;
        /* The moved value keeps its mtime (as rename(2) keeps a file's)
         * and its identity, but gets this slot as version: the target key
         * changed here. */
        /* invariant 4: the source's hash and a DEAD slot for each of the
         * two keys are ready before map_put changes anything */
        uint8_t h_src[KV_DIGEST_BYTES];
        if (kv_rec_hash(s, op->key, op->key_len, n->val, h_src) != 0 ||
            (s->view && kv_dead_reserve(s, 2) != 0))
            return KV_APPLY_NOMEM;
        v = kv_value_new(n->val->data, n->val->len, NULL, 0, n->val->mtime_ms,
                         slot, n->val->ident);
        if (!v)
            return KV_APPLY_NOMEM;
        if (kv_map_put(s, op->key2, op->key2_len, v))
            return KV_APPLY_NOMEM;
        /* map_put may have grown the table: look the source up again. */
        kv_map_remove_hashed(s, kv_find_node(s, op->key, op->key_len), h_src);
        return 0;
    default:
        return -EINVAL;
    }
}

static int32_t apply_request(kv *s, const px_request *req, uint64_t slot,
                             uint64_t time_ms, uint32_t position)
{
    kv_op op;
    int rc = kv_op_decode(req->op, req->len, &op);
    if (rc) {
        /* malformed, or a key no replica may store (kv_key_check): a
         * no-op with the same result on every replica */
        s->invalid_ops++;
        return rc;
    }
    int32_t result = apply_op(s, &op, slot, time_ms,
                              (slot << KV_IDENT_SLOT_SHIFT) |
                              (uint64_t)(position + 1));
    if (result == 0 && s->changed) {
        s->changed(s->changed_arg, op.key, op.key_len,
                   !kv_find_node(s, op.key, op.key_len));
        if (op.type == KV_OP_RENAME)
            s->changed(s->changed_arg, op.key2, op.key2_len,
                       !kv_find_node(s, op.key2, op.key2_len));
    }
    return result;
}

void kv_set_changed(kv *s, kv_changed_fn fn, void *arg)
{
    s->changed = fn;
    s->changed_arg = arg;
}

/* Request results for FORGOTTEN requests (already applied and answered
 * long ago, below the client's ack_seq): the callback still runs, so
 * "one callback per request" holds, with -EALREADY, which no fresh
 * request can produce. */
static int apply_batch(kv *s, const px_entry *e, kv_result_fn cb, void *arg)
{
    uint32_t off = 0, n = 0;
    uint32_t bound = e->len / KV_REQUEST_MIN_BYTES + 1;
    px_request req;
    int r;

    /* Validate the whole batch first: a malformed one applies nothing. */
    while ((r = px_batch_next(e->data, e->len, &off, &req)) == 1)
        if (++n > bound)
            return -EINVAL;
    /* identities hold the position below the slot (kv.h) */
    if (r < 0 || n >= (1u << KV_IDENT_SLOT_SHIFT) ||
        e->slot >= (1ull << (64 - KV_IDENT_SLOT_SHIFT)))
        return -EINVAL;

    uint32_t skip = s->partial_slot == e->slot ? s->partial_done : 0;
    off = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (px_batch_next(e->data, e->len, &off, &req) != 1)
            return -EINVAL;
        if (i < skip)
            continue;
        int32_t result = 0;
        int st = kv_sessions_check(s->sessions, &req, &result);
        if (st < 0)
            goto out_partial;
        if (st == KV_SESSION_NEW) {
            result = apply_request(s, &req, e->slot, e->time_ms, i);
            if (result == KV_APPLY_NOMEM) {
                st = -ENOMEM;
                goto out_partial;
            }
            st = kv_sessions_record(s->sessions, &req, result, e->slot);
            if (st < 0) {
                /* The op is applied; do not apply it again on retry. */
                i++;
                goto out_partial;
            }
        } else if (st == KV_SESSION_FORGOTTEN) {
            result = -EALREADY;
        }
        if (cb)
            cb(arg, req.client_id, req.seq, result, e->slot);
        continue;
out_partial:
        s->partial_slot = e->slot;
        s->partial_done = i;
        return st;
    }
    return 0;
}

int kv_apply_entry(kv *s, const px_entry *e, kv_result_fn cb, void *arg)
{
    if (!s || !e || e->slot != s->applied + 1)
        return -EINVAL;
    if (e->kind == PX_ENTRY_BATCH) {
        if (e->len > 0 && !e->data)
            return -EINVAL;
        int rc = apply_batch(s, e, cb, arg);
        if (rc)
            return rc;
    } else if (e->kind != PX_ENTRY_NOOP && e->kind != PX_ENTRY_CONFIG &&
               e->kind != PX_ENTRY_CHECKPOINT) {
        /* a checkpoint changes no key: the node compares its digest */
        return -EINVAL;
    }
    s->partial_slot = 0;
    s->partial_done = 0;
    s->applied = e->slot;
    if (!s->view && s->n_dead)
        kv_reclaim(s, KV_RECLAIM_PER_APPLY);
    return 0;
}

