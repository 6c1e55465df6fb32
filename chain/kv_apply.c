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

/* dst replaces src as the value of the same file: it keeps src's owner and
 * mode and counts one more change (kv_value.changes). */
static void attrs_copy(kv_value *dst, const kv_value *src)
{
    dst->changes = src->changes + 1;
    dst->uid = src->uid;
    dst->gid = src->gid;
    dst->mode = src->mode;
}

/* The owner and mode an OWNER op gives a key it creates. */
static void attrs_own(kv_value *v, const kv_op *op, uint32_t type)
{
    if (!op->has_owner)
        return;
    v->uid = op->uid;
    v->gid = op->gid;
    v->mode = type | (op->perm & KV_MODE_PERM);
}

/* SETATTR (kv.h): a new value of the file or directory at the path, the
 * same bytes and identity, with this slot as version. */
static int32_t apply_setattr(kv *s, const kv_op *op, kv_node *n,
                             uint64_t slot, uint64_t time_ms);

/* The node of the directory at path p (its key: p and '/'), or NULL. */
static kv_node *dir_node(const kv *s, const char *p, size_t len)
{
    char key[KV_MAX_KEY];
    if (len == 0 || len >= KV_MAX_KEY)
        return NULL;
    memcpy(key, p, len);
    key[len] = '/';
    return kv_find_node(s, key, len + 1);
}

/* Does the directory that would hold path p exist?  0, or -ENOENT (a
 * missing directory on the way) or -ENOTDIR (a file on the way).  A key
 * exists only below an existing directory, so finding the parent is
 * enough; the walk from the top is only for the precise errno. */
static int32_t parent_check(const kv *s, const char *p, size_t len)
{
    const char *slash = memrchr(p, '/', len);
    if (!slash || kv_find_node(s, p, (size_t)(slash - p) + 1))
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (p[i] != '/')
            continue;
        if (kv_find_node(s, p, i + 1))
            continue;                       /* the directory p[0..i] */
        return kv_find_node(s, p, i) ? -ENOTDIR : -ENOENT;
    }
    return -ENOENT;
}

/* A missing key's errno: what is wrong on the way to it, else ENOENT. */
static int32_t missing(const kv *s, const char *p, size_t len)
{
    int32_t rc = parent_check(s, p, len);
    return rc ? rc : -ENOENT;
}

/* Does `p` (len) lie strictly below the directory at path `d`? */
static bool below(const char *p, size_t len, const char *d, size_t dlen)
{
    return len > dlen && p[dlen] == '/' && memcmp(p, d, dlen) == 0;
}

/* The guard of a COND op: 0 if it holds, else the op's result. */
static int32_t check_cond(const kv *s, const kv_op *op)
{
    const kv_node *c = kv_find_node(s, op->cond_key, op->cond_key_len);
    switch (op->cond_kind) {
    case KV_COND_ABSENT:
        return c || dir_node(s, op->cond_key, op->cond_key_len) ? -EEXIST : 0;
    case KV_COND_IDENT:
        return c && c->val->ident == op->cond_arg ? 0 : -ESTALE;
    case KV_COND_VERSION:
        return c && c->val->version == op->cond_arg ? 0 : -ESTALE;
    default:
        return -EINVAL;
    }
}

/* What a rename or a removal changed, told to the observer once the state
 * shows it: keys that may be gone, then keys that hold something new. */
typedef struct kv_moved {
    char *gone;                /* the removed keys, one after the other */
    uint16_t *gone_len;
    size_t n_gone;
    const kv_map_add *added;
    size_t n_added;
} kv_moved;

static void tell_moved(kv *s, const kv_moved *m)
{
    if (!s->changed)
        return;
    const char *k = m->gone;
    for (size_t i = 0; i < m->n_gone; k += m->gone_len[i], i++)
        if (!kv_find_node(s, k, m->gone_len[i]))
            s->changed(s->changed_arg, k, m->gone_len[i], true);
    for (size_t i = 0; i < m->n_added; i++)
        s->changed(s->changed_arg, m->added[i].key, m->added[i].len, false);
}

/* One side of a rename: the nodes of the key at `from` (a file, or a
 * directory with everything below it) and their new keys under `to`. */
typedef struct kv_side {
    kv_node **nodes;
    size_t n;
} kv_side;

static int side_collect(const kv *s, kv_node *file, const char *from,
                        size_t from_len, kv_side *out)
{
    out->nodes = NULL;
    out->n = 0;
    if (file) {
        out->nodes = malloc(sizeof *out->nodes);
        if (!out->nodes)
            return -ENOMEM;
        out->nodes[0] = file;
        out->n = 1;
        return 0;
    }
    char key[KV_MAX_KEY];
    memcpy(key, from, from_len);
    key[from_len] = '/';
    return kv_map_collect(s, key, from_len + 1, &out->nodes, &out->n);
}

/* Build the new key and value of every node of `side` moved from `from`
 * (a path of from_len bytes) to `to` into add[] (keys into *arena at *used).  The renamed key itself
 * (the file, or the directory's own key) gets a new value with this slot
 * as version, as a renamed file always did; what moves with a directory
 * keeps its value (the same immutable bytes, version and identity). */
static int side_build(const kv_side *side, size_t from_len,
                      const char *to, size_t to_len, uint64_t slot,
                      kv_map_add *add, char *arena, size_t *used)
{
    for (size_t i = 0; i < side->n; i++) {
        const kv_node *n = side->nodes[i];
        const char *k = kv_node_key(n);
        size_t rest = n->key_len - from_len;
        char *nk = arena + *used;
        memcpy(nk, to, to_len);
        memcpy(nk + to_len, k + from_len, rest);
        *used += to_len + rest;
        add[i].key = nk;
        add[i].len = to_len + rest;
        /* the key rule's lengths: a path, or a directory's path and '/' */
        if (add[i].len > (nk[add[i].len - 1] == '/' ? KV_MAX_KEY
                                                     : KV_MAX_PATH))
            return -ENAMETOOLONG;
        const kv_value *v = n->val;
        if (i == 0) {
            add[i].val = kv_value_new(v->data, v->len, NULL, 0, v->mtime_ms,
                                      slot, v->ident);
            if (!add[i].val)
                return -ENOMEM;
            attrs_copy(add[i].val, v);
        } else {
            kv_value_ref(v);
            add[i].val = (kv_value *)v;
        }
    }
    return 0;
}

/* RENAME and RENAMEX (kv.h, "Results"). */
static int32_t apply_rename(kv *s, const kv_op *op, uint64_t slot)
{
    const char *from = op->key, *to = op->key2;
    size_t flen = op->key_len, tlen = op->key2_len;
    uint8_t flags = op->type == KV_OP_RENAMEX ? op->flags : 0;
    kv_node *sf = kv_find_node(s, from, flen);
    kv_node *sd = sf ? NULL : dir_node(s, from, flen);
    if (!sf && !sd)
        return missing(s, from, flen);
    int32_t rc = parent_check(s, to, tlen);
    if (rc)
        return rc;
    if (kv_key_cmp(from, flen, to, tlen) == 0)
        return 0;
    if (sd && below(to, tlen, from, flen))
        return -EINVAL;                  /* a directory into itself */
    kv_node *tf = kv_find_node(s, to, tlen);
    kv_node *td = tf ? NULL : dir_node(s, to, tlen);
    bool exchange = flags & KV_RENAME_EXCHANGE;
    kv_node *replaced = NULL;
    if (exchange) {
        if (!tf && !td)
            return missing(s, to, tlen);
        if (td && below(from, flen, to, tlen))
            return -EINVAL;
    } else if (tf || td) {
        if (flags & KV_RENAME_NOREPLACE)
            return -EEXIST;
        if (sf && td)
            return -EISDIR;
        if (sd && tf)
            return -ENOTDIR;
        if (td && kv_map_has_below(s, kv_node_key(td), td->key_len))
            return -ENOTEMPTY;
        replaced = tf ? tf : td;
    }
    /* everything is gathered and allocated before anything changes
     * (invariant 4); an allocation failure is KV_APPLY_NOMEM */
    kv_side a = { 0 }, b = { 0 };
    kv_map_add *add = NULL;
    kv_node **rm = NULL;
    char *arena = NULL;
    uint16_t *gone_len = NULL;
    char *gone = NULL;
    int32_t result = KV_APPLY_NOMEM;
    size_t n_add = 0, n_rm = 0, used = 0, arena_len = 0, gone_bytes = 0;
    if (side_collect(s, sf, from, flen, &a) != 0 ||
        (exchange && side_collect(s, tf, to, tlen, &b) != 0))
        goto out;
    size_t total = a.n + b.n + (replaced ? 1 : 0);
    for (size_t i = 0; i < a.n; i++) {
        arena_len += a.nodes[i]->key_len - flen + tlen;
        gone_bytes += a.nodes[i]->key_len;
    }
    for (size_t i = 0; i < b.n; i++) {
        arena_len += b.nodes[i]->key_len - tlen + flen;
        gone_bytes += b.nodes[i]->key_len;
    }
    if (replaced)
        gone_bytes += replaced->key_len;
    add = calloc(a.n + b.n + 1, sizeof *add);
    rm = calloc(total + 1, sizeof *rm);
    arena = malloc(arena_len + 1);
    gone = malloc(gone_bytes + 1);
    gone_len = calloc(total + 1, sizeof *gone_len);
    if (!add || !rm || !arena || !gone || !gone_len)
        goto out;
    rc = side_build(&a, flen, to, tlen, slot, add, arena, &used);
    n_add = a.n;
    if (rc == 0 && exchange) {
        rc = side_build(&b, tlen, from, flen, slot, add + a.n, arena,
                        &used);
        n_add += b.n;
    }
    if (rc == -ENAMETOOLONG) {
        result = rc;                     /* a key below would grow too long */
        goto out;
    }
    if (rc)
        goto out;
    for (size_t i = 0; i < a.n; i++)
        rm[n_rm++] = a.nodes[i];
    for (size_t i = 0; i < b.n; i++)
        rm[n_rm++] = b.nodes[i];
    if (replaced)
        rm[n_rm++] = replaced;
    size_t off = 0;
    for (size_t i = 0; i < n_rm; i++) {
        memcpy(gone + off, kv_node_key(rm[i]), rm[i]->key_len);
        gone_len[i] = rm[i]->key_len;
        off += rm[i]->key_len;
    }
    if (kv_map_replace(s, rm, n_rm, add, n_add) != 0)
        goto out;
    kv_moved m = { gone, gone_len, n_rm, add, n_add };
    tell_moved(s, &m);
    n_add = 0;                           /* the values moved in */
    result = 0;
out:
    for (size_t i = 0; i < n_add; i++)
        kv_value_unref(add[i].val);
    free(a.nodes);
    free(b.nodes);
    free(add);
    free(rm);
    free(arena);
    free(gone);
    free(gone_len);
    return result;
}

static int32_t apply_op(kv *s, const kv_op *op, uint64_t slot,
                        uint64_t time_ms, uint64_t ident)
{
    kv_node *n = kv_find_node(s, op->key, op->key_len);
    kv_value *v;
    int32_t rc;

    if (op->cond_kind) {
        rc = check_cond(s, op);
        if (rc)
            return rc;
    }
    switch (op->type) {
    case KV_OP_PUT:
    case KV_OP_APPEND:
        if (!n) {
            rc = parent_check(s, op->key, op->key_len);
            if (rc)
                return rc;
            if (dir_node(s, op->key, op->key_len))
                return -EISDIR;
        }
        if (op->type == KV_OP_PUT) {
            v = kv_value_new(op->value, op->value_len, NULL, 0, time_ms, slot,
                             n ? n->val->ident : ident);
            if (v && n)
                attrs_copy(v, n->val);
            else if (v)
                attrs_own(v, op, KV_MODE_FILE);
        } else {
            if (n && (uint64_t)n->val->len + op->value_len > KV_MAX_VALUE)
                return -EFBIG;
            v = kv_value_new(n ? n->val->data : NULL, n ? n->val->len : 0,
                             op->value, op->value_len, time_ms, slot,
                             n ? n->val->ident : ident);
            if (v && n)
                attrs_copy(v, n->val);
            else if (v)
                attrs_own(v, op, KV_MODE_FILE);
        }
        if (!v)
            return KV_APPLY_NOMEM;
        return kv_map_put(s, op->key, op->key_len, v) ? KV_APPLY_NOMEM : 0;
    case KV_OP_DEL:
        if (!n)
            return dir_node(s, op->key, op->key_len)
                   ? -EISDIR : missing(s, op->key, op->key_len);
        return kv_map_remove(s, n) ? KV_APPLY_NOMEM : 0;
    case KV_OP_MKDIR: {
        if (n || dir_node(s, op->key, op->key_len))
            return -EEXIST;
        rc = parent_check(s, op->key, op->key_len);
        if (rc)
            return rc;
        char key[KV_MAX_KEY];
        memcpy(key, op->key, op->key_len);
        key[op->key_len] = '/';
        v = kv_value_new(NULL, 0, NULL, 0, time_ms, slot, ident);
        if (!v)
            return KV_APPLY_NOMEM;
        attrs_own(v, op, KV_MODE_DIR);
        return kv_map_put(s, key, op->key_len + 1u, v) ? KV_APPLY_NOMEM : 0;
    }
    case KV_OP_RMDIR: {
        kv_node *d = dir_node(s, op->key, op->key_len);
        if (!d)
            return n ? -ENOTDIR : missing(s, op->key, op->key_len);
        if (kv_map_has_below(s, kv_node_key(d), d->key_len))
            return -ENOTEMPTY;
        return kv_map_remove(s, d) ? KV_APPLY_NOMEM : 0;
    }
    case KV_OP_RENAME:
    case KV_OP_RENAMEX:
        return apply_rename(s, op, slot);
    case KV_OP_SETATTR:
        return apply_setattr(s, op, n, slot, time_ms);
    default:
        return -EINVAL;
    }
}

static int32_t apply_setattr(kv *s, const kv_op *op, kv_node *n,
                             uint64_t slot, uint64_t time_ms)
{
    bool dir = false;
    if (!n) {
        n = dir_node(s, op->key, op->key_len);
        dir = true;
    }
    if (!n)
        return missing(s, op->key, op->key_len);
    const kv_value *old = n->val;
    kv_value *v = kv_value_new(old->data, old->len, NULL, 0, old->mtime_ms,
                               slot, old->ident);
    if (!v)
        return KV_APPLY_NOMEM;
    attrs_copy(v, old);
    if (op->attr_mask & KV_ATTR_OWNER) {
        v->uid = op->uid;
        v->gid = op->gid;
        v->mode = (dir ? KV_MODE_DIR : KV_MODE_FILE) | op->perm;
    }
    if (op->attr_mask & KV_ATTR_MTIME)
        v->mtime_ms = op->mtime_ms;
    else if (op->attr_mask & KV_ATTR_MTIME_NOW)
        v->mtime_ms = time_ms;
    /* n's key: the path, or the directory's path and '/' */
    char key[KV_MAX_KEY];
    size_t klen = n->key_len;
    memcpy(key, kv_node_key(n), klen);
    return kv_map_put(s, key, klen, v) ? KV_APPLY_NOMEM : 0;
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
    if (result == 0 && s->changed && op.type != KV_OP_RENAME &&
        op.type != KV_OP_RENAMEX) {
        /* (a rename told what it changed itself, tell_moved) */
        if (op.type == KV_OP_MKDIR || op.type == KV_OP_RMDIR ||
            (op.type == KV_OP_SETATTR &&
             !kv_find_node(s, op.key, op.key_len))) {
            char key[KV_MAX_KEY];
            memcpy(key, op.key, op.key_len);
            key[op.key_len] = '/';
            s->changed(s->changed_arg, key, op.key_len + 1u,
                       op.type == KV_OP_RMDIR);
        } else {
            s->changed(s->changed_arg, op.key, op.key_len,
                       !kv_find_node(s, op.key, op.key_len));
        }
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

