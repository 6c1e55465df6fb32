/*
 * reads.c - owns the mount's reads of state (see reads.h): a request is a
 * copy of what the mount asked; it waits in the client handle and is
 * served from the key-value state when the handle calls it back.
 */
#include "reads.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum { READ_KEY = 1, READ_LIST, READ_USAGE };

typedef struct read_req {
    kv *const *where;          /* where the state lives: read when served */
    uint8_t kind;
    unsigned flags;
    union {
        fs_read_fn key;
        fs_list_fn list;
        fs_usage_fn usage;
    } done;
    void *arg;
    uint32_t max;              /* READ_LIST */
    uint64_t at;               /* read point known already, 0: ask */
    size_t key_len;
    char key[];                /* the key, or where a listing starts after */
} read_req;

void reads_meta(const kv_value *v, fs_meta *m)
{
    *m = (fs_meta){ .ident = v->ident, .version = v->version,
                    .changes = v->changes, .mtime_ms = v->mtime_ms, .len = v->len, .uid = v->uid,
                    .gid = v->gid, .mode = v->mode };
}

static int key_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int c = n ? memcmp(a, b, n) : 0;
    if (c)
        return c;
    return alen < blen ? -1 : alen > blen;
}

static void serve_key(read_req *r)
{
    fs_entry_view view = { 0 };
    const kv_value *v = kv_get(*r->where, r->key, r->key_len);
    if (v) {
        reads_meta(v, &view.meta);
        if (r->flags & FS_READ_VALUE) {
            /* lent for the callback: whatever it does, the value lives */
            kv_value_ref(v);
            view.value = v;
        }
    }
    r->done.key(r->arg, 0, &view);
    if (view.value)
        kv_value_unref(view.value);
}

/* A page being built: the keys are copied into one buffer, and the
 * entries hold offsets into it until the page is complete. */
struct page_build {
    const read_req *r;
    fs_entry_view *entries;
    uint32_t n, cap;
    bool more;
    char *keys;
    size_t keys_len, keys_cap;
    int rc;
};

static int grow(void **buf, size_t *cap, size_t need, size_t unit)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 64;
    while (n < need)
        n *= 2;
    void *nb = realloc(*buf, n * unit);
    if (!nb)
        return -ENOMEM;
    *buf = nb;
    *cap = n;
    return 0;
}

static int page_visit(void *arg, const char *key, size_t key_len,
                      const kv_value *v)
{
    struct page_build *p = arg;
    const read_req *r = p->r;
    if (r->key_len && key_cmp(key, key_len, r->key, r->key_len) <= 0)
        return 0;   /* not after the start yet */
    if (p->n == r->max) {
        p->more = true;
        return 1;
    }
    size_t cap = p->cap;
    if (grow((void **)&p->entries, &cap, (size_t)p->n + 1,
             sizeof *p->entries) < 0 ||
        grow((void **)&p->keys, &p->keys_cap, p->keys_len + key_len, 1) < 0) {
        p->rc = -ENOMEM;
        return 1;
    }
    p->cap = (uint32_t)cap;
    memcpy(p->keys + p->keys_len, key, key_len);
    fs_entry_view *e = &p->entries[p->n++];
    *e = (fs_entry_view){ .key = (const char *)(uintptr_t)p->keys_len,
                          .key_len = key_len };
    reads_meta(v, &e->meta);
    p->keys_len += key_len;
    return 0;
}

static void serve_list(read_req *r)
{
    struct page_build p = { .r = r };
    /* the map's order is byte order; a page after a key walks past the
     * keys before it */
    int rc = kv_scan(*r->where, "", 0, page_visit, &p);
    rc = p.rc ? p.rc : (rc < 0 ? rc : 0);
    if (rc < 0) {
        r->done.list(r->arg, rc, NULL);
    } else {
        for (uint32_t i = 0; i < p.n; i++)
            p.entries[i].key = p.keys + (uintptr_t)p.entries[i].key;
        fs_dir_page page = { .entries = p.entries, .n = p.n, .more = p.more };
        r->done.list(r->arg, 0, &page);
    }
    free(p.entries);
    free(p.keys);
}

/* The client handle's callback: the read point was reached (or the
 * deferred call came), or the request failed. */
static void serve(void *arg, int result)
{
    read_req *r = arg;
    if (result < 0) {
        if (r->kind == READ_KEY)
            r->done.key(r->arg, result, NULL);
        else if (r->kind == READ_LIST)
            r->done.list(r->arg, result, NULL);
        else
            r->done.usage(r->arg, result, NULL);
    } else if (r->kind == READ_KEY) {
        serve_key(r);
    } else if (r->kind == READ_LIST) {
        serve_list(r);
    } else {
        fs_usage u = { .keys = kv_count(*r->where),
                       .bytes = kv_bytes(*r->where) };
        r->done.usage(r->arg, 0, &u);
    }
    free(r);
}

static read_req *req_new(kv *const *state, uint8_t kind, unsigned flags,
                         const char *key, size_t key_len, void *arg)
{
    read_req *r = malloc(sizeof *r + key_len);
    if (!r)
        return NULL;
    *r = (read_req){ .where = state, .kind = kind, .flags = flags,
                     .arg = arg, .key_len = key_len };
    if (key_len)
        memcpy(r->key, key, key_len);
    return r;
}

static int enqueue(client *c, uint64_t now_ms, read_req *r)
{
    int rc = (r->flags & FS_READ_APPLIED) ? client_defer(c, serve, r)
             : r->at ? client_read_at(c, now_ms, r->at, serve, r)
                     : client_read(c, now_ms, serve, r);
    if (rc < 0)
        free(r);
    return rc;
}

int reads_key(client *c, kv *const *state, uint64_t now_ms, const char *key,
              size_t key_len, unsigned flags, uint64_t at, fs_read_fn done,
              void *arg)
{
    if (key_len == 0 || !done)
        return -EINVAL;
    if (key_len > KV_MAX_KEY)
        return -ENAMETOOLONG;
    read_req *r = req_new(state, READ_KEY, flags, key, key_len, arg);
    if (!r)
        return -ENOMEM;
    r->done.key = done;
    r->at = at;
    return enqueue(c, now_ms, r);
}

/* Whether paths a and b are one, or one lies below the other (a
 * directory's key, its path and '/', counts as its path). */
static bool paths_related(const char *a, size_t al, const char *b, size_t bl)
{
    if (al > 1 && a[al - 1] == '/')
        al--;
    if (bl > 1 && b[bl - 1] == '/')
        bl--;
    size_t n = al < bl ? al : bl;
    if (n && memcmp(a, b, n) != 0)
        return false;
    return al == bl || (al > bl ? a : b)[n] == '/';
}

bool reads_key_depends(void *arg, const uint8_t *data, uint32_t len)
{
    const reads_dep *k = arg;
    uint32_t off = 0;
    px_request rq;
    int rc;
    while ((rc = px_batch_next(data, len, &off, &rq)) == 1) {
        kv_op op;
        if (kv_op_decode(rq.op, rq.len, &op) < 0 ||
            paths_related(k->key, k->len, op.key, op.key_len) ||
            (op.key2_len &&
             paths_related(k->key, k->len, op.key2, op.key2_len)) ||
            (op.cond_key_len &&
             paths_related(k->key, k->len, op.cond_key, op.cond_key_len)))
            return true;
    }
    return rc < 0;
}

int reads_list(client *c, kv *const *state, uint64_t now_ms, const char *after,
               size_t after_len, uint32_t max, unsigned flags,
               fs_list_fn done, void *arg)
{
    if (max == 0 || !done)
        return -EINVAL;
    if (after_len > KV_MAX_KEY)
        return -ENAMETOOLONG;
    read_req *r = req_new(state, READ_LIST, flags & ~FS_READ_VALUE, after,
                          after_len, arg);
    if (!r)
        return -ENOMEM;
    r->done.list = done;
    r->max = max < FS_LIST_MAX ? max : FS_LIST_MAX;   /* invariant 3 */
    return enqueue(c, now_ms, r);
}

int reads_usage(client *c, kv *const *state, fs_usage_fn done, void *arg)
{
    if (!done)
        return -EINVAL;
    read_req *r = req_new(state, READ_USAGE, FS_READ_APPLIED, NULL, 0, arg);
    if (!r)
        return -ENOMEM;
    r->done.usage = done;
    return enqueue(c, 0, r);
}
