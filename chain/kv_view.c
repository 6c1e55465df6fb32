/*
 * kv_view.c - frozen views of the key-value state (kv_freeze): what a
 * snapshot is written from, on another thread, while the owner goes on
 * applying.  The rules that make this safe (F1-F3: nodes born after the
 * view are skipped, nodes the view can see are never changed but replaced,
 * level-0 links published with release stores) are kept by the map in
 * kv.c; this file only walks what they guarantee.
 */
#include "kv_map.h"
#include "chain_int.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

int kv_freeze(kv *s, kv_view **out)
{
    if (!s || !out)
        return -EINVAL;
    if (s->view)
        return -EBUSY;
    kv_reclaim(s, SIZE_MAX);     /* no DEAD node from an earlier view */
    kv_view *v = calloc(1, sizeof *v);
    if (!v)
        return -ENOMEM;
    int64_t len = kv_sessions_encode(s->sessions, NULL, 0);
    if (len < 0) {
        free(v);
        return (int)len;
    }
    v->sessions = malloc((size_t)len);
    if (!v->sessions ||
        kv_sessions_encode(s->sessions, v->sessions, (uint64_t)len) != len) {
        free(v->sessions);
        free(v);
        return -ENOMEM;
    }
    v->sessions_len = (size_t)len;
    v->s = s;
    v->gen = ++s->gen;
    v->applied = s->applied;
    v->count = s->count;
    v->bytes = s->value_bytes;
    kv_digest(s, v->digest);
    s->view = v;
    *out = v;
    return 0;
}

int kv_view_next(kv_view *v, const char **key, size_t *key_len,
                 const kv_value **val)
{
    kv_node *n;
    if (v->started)
        n = __atomic_load_n(&((kv_node *)v->cursor)->next[0], __ATOMIC_ACQUIRE);
    else
        n = __atomic_load_n(&v->s->head[0], __ATOMIC_ACQUIRE);
    while (n && n->born == v->gen)          /* F1: created after the view */
        n = __atomic_load_n(&n->next[0], __ATOMIC_ACQUIRE);
    if (!n)
        return 0;
    v->started = 1;
    v->cursor = n;
    *key = kv_node_key(n);
    *key_len = n->key_len;
    *val = n->val;
    return 1;
}

void kv_view_rewind(kv_view *v)
{
    v->started = 0;
    v->cursor = NULL;
}

uint64_t kv_view_index(const kv_view *v)
{
    return v->applied;
}

uint64_t kv_view_count(const kv_view *v)
{
    return v->count;
}

uint64_t kv_view_bytes(const kv_view *v)
{
    return v->bytes;
}

void kv_view_digest(const kv_view *v, uint8_t out[KV_DIGEST_BYTES])
{
    memcpy(out, v->digest, KV_DIGEST_BYTES);
}

const uint8_t *kv_view_sessions(const kv_view *v, size_t *len)
{
    *len = v->sessions_len;
    return v->sessions;
}

void kv_thaw(kv *s, kv_view *v)
{
    if (!s || !v)
        return;
    assert(s->view == v);
    s->view = NULL;
    free(v->sessions);
    free(v);
}

