/*
 * sessions.c - owns the exactly-once session table (DESIGN.md invariant 5).
 * Pure: updated only while the host applies committed entries, so every
 * replica holds the same table and it travels in snapshots.
 *
 * Per client:
 *   floor    every seq below it is forgotten (the client acknowledged it
 *            through ack_seq);
 *   results  up to max_per_client (seq, result) pairs, sorted by seq;
 *   high     every seq <= high that is neither >= a kept result nor in
 *            `gaps` was applied and its result dropped for space;
 *   gaps     seqs <= high never applied yet (requests still in flight when
 *            an older result was dropped), sorted, at most max_per_client.
 * So dropping a result for space never forgets a request that was not
 * applied: a seq in flight (a stuck retry) stays NEW until it is applied.
 *
 * Encoding (little-endian), clients from least to most recently used:
 *   offset  size  meaning
 *   0       4     magic 0x53535850 ("PXSS")
 *   4       4     version = 2
 *   8       4     client count
 *   12      ...   per client: u64 client_id, u64 floor, u64 high,
 *                 u64 last_slot, u32 n, u32 n_gaps,
 *                 n x { u64 seq, i32 result }, n_gaps x u64 seq
 *
 * Invariants:
 *   1. At most max_clients clients; recording a new client when full
 *      evicts the least recently recorded one (ties impossible: records
 *      happen one at a time in log order), so eviction is the same on
 *      every replica.
 *   2. Per client at most max_per_client results and max_per_client gaps,
 *      each sorted strictly increasing and >= floor; a dropped result's
 *      seq is covered by `high`, so a late retry of it is FORGOTTEN, never
 *      applied twice, while seqs never applied stay NEW (as gaps).  Only a
 *      client with more than max_per_client requests in flight at once can
 *      lose a gap (the lowest one is then forgotten).
 *   3. Decode validates everything (bounds, order, uniqueness, exact
 *      length) before replacing the table; on -EINVAL the table is
 *      unchanged.
 */
#include "sessions.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../base/le.h"

#define PX_SESS_MAGIC 0x53535850u
#define PX_SESS_VERSION 2u

typedef struct px_sclient {
    uint64_t client_id;
    uint64_t floor;
    uint64_t high;
    uint64_t last_slot;
    uint64_t *seqs;
    int32_t *results;
    uint64_t *gaps;
    uint32_t n, n_gaps;
    int32_t prev, next;   /* LRU list, head = least recently used */
} px_sclient;

struct kv_sessions {
    uint32_t max_clients, max_per_client;
    px_sclient *clients;
    uint32_t n_clients, cap_clients;
    int32_t *hash;        /* client_id -> index, linear probing */
    uint32_t hash_mask;
    int32_t lru_head, lru_tail;
};

static uint32_t px_sess_hash(uint64_t id, uint32_t mask)
{
    uint64_t h = id * UINT64_C(0x9E3779B97F4A7C15);
    return (uint32_t)(h ^ (h >> 32)) & mask;
}

static int px_sess_rehash(kv_sessions *t, uint32_t hsize)
{
    int32_t *h = malloc((size_t)hsize * sizeof(int32_t));
    if (!h)
        return -ENOMEM;
    for (uint32_t i = 0; i < hsize; i++)
        h[i] = -1;
    for (uint32_t i = 0; i < t->n_clients; i++) {
        uint32_t pos = px_sess_hash(t->clients[i].client_id, hsize - 1);
        while (h[pos] >= 0)
            pos = (pos + 1) & (hsize - 1);
        h[pos] = (int32_t)i;
    }
    free(t->hash);
    t->hash = h;
    t->hash_mask = hsize - 1;
    return 0;
}

kv_sessions *kv_sessions_create(uint32_t max_clients, uint32_t max_per_client)
{
    if (max_clients == 0 || max_per_client == 0 ||
        max_clients > (1u << 24) || max_per_client > (1u << 16))
        return NULL;
    kv_sessions *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->max_clients = max_clients;
    t->max_per_client = max_per_client;
    t->lru_head = t->lru_tail = -1;
    if (px_sess_rehash(t, 16) < 0) {
        free(t);
        return NULL;
    }
    return t;
}

static void px_sess_clear(kv_sessions *t)
{
    for (uint32_t i = 0; i < t->n_clients; i++) {
        free(t->clients[i].seqs);
        free(t->clients[i].results);
        free(t->clients[i].gaps);
    }
    free(t->clients);
    free(t->hash);
}

void kv_sessions_destroy(kv_sessions *t)
{
    if (!t)
        return;
    px_sess_clear(t);
    free(t);
}

static int32_t px_sess_find(const kv_sessions *t, uint64_t id)
{
    uint32_t pos = px_sess_hash(id, t->hash_mask);
    for (uint32_t n = 0; n <= t->hash_mask; n++) {
        int32_t i = t->hash[pos];
        if (i < 0)
            return -1;
        if (t->clients[i].client_id == id)
            return i;
        pos = (pos + 1) & t->hash_mask;
    }
    return -1;
}

static void px_lru_unlink(kv_sessions *t, int32_t i)
{
    px_sclient *c = &t->clients[i];
    if (c->prev >= 0)
        t->clients[c->prev].next = c->next;
    else
        t->lru_head = c->next;
    if (c->next >= 0)
        t->clients[c->next].prev = c->prev;
    else
        t->lru_tail = c->prev;
}

static void px_lru_append(kv_sessions *t, int32_t i)
{
    px_sclient *c = &t->clients[i];
    c->next = -1;
    c->prev = t->lru_tail;
    if (t->lru_tail >= 0)
        t->clients[t->lru_tail].next = i;
    else
        t->lru_head = i;
    t->lru_tail = i;
}

/* Binary search in a sorted array: index of seq, or -(insertion point)-1. */
static int64_t px_seq_search(const uint64_t *a, uint32_t n, uint64_t seq)
{
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (a[mid] < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < n && a[lo] == seq)
        return lo;
    return -(int64_t)lo - 1;
}

static int64_t px_sess_search(const px_sclient *c, uint64_t seq)
{
    return px_seq_search(c->seqs, c->n, seq);
}

int kv_sessions_check(kv_sessions *t, const px_request *req, int32_t *result)
{
    if (!t || !req)
        return -EINVAL;
    int32_t i = px_sess_find(t, req->client_id);
    if (i < 0)
        return KV_SESSION_NEW;
    const px_sclient *c = &t->clients[i];
    if (req->seq < c->floor)
        return KV_SESSION_FORGOTTEN;
    int64_t k = px_sess_search(c, req->seq);
    if (k >= 0) {
        if (result)
            *result = c->results[k];
        return KV_SESSION_DUPLICATE;
    }
    if (req->seq <= c->high && px_seq_search(c->gaps, c->n_gaps, req->seq) < 0)
        return KV_SESSION_FORGOTTEN; /* applied; result dropped for space */
    return KV_SESSION_NEW;
}

/* Remove client i (the LRU head) and move the last client into its
 * index, keeping the hash and the LRU links right. */
static void px_sess_evict(kv_sessions *t, int32_t i)
{
    px_lru_unlink(t, i);
    free(t->clients[i].seqs);
    free(t->clients[i].results);
    free(t->clients[i].gaps);
    int32_t last = (int32_t)t->n_clients - 1;
    if (i != last) {
        t->clients[i] = t->clients[last];
        px_sclient *c = &t->clients[i];
        if (c->prev >= 0)
            t->clients[c->prev].next = i;
        else
            t->lru_head = i;
        if (c->next >= 0)
            t->clients[c->next].prev = i;
        else
            t->lru_tail = i;
    }
    t->n_clients--;
    /* the hash holds indexes: rebuild (eviction is rare: table full) */
    (void)px_sess_rehash(t, t->hash_mask + 1);
}

static int32_t px_sess_new_client(kv_sessions *t, uint64_t id)
{
    if (t->n_clients == t->max_clients && t->lru_head >= 0)
        px_sess_evict(t, t->lru_head);
    if (t->n_clients == t->cap_clients) {
        uint32_t cap = t->cap_clients ? t->cap_clients * 2 : 16;
        if (cap > t->max_clients)
            cap = t->max_clients;
        px_sclient *p = realloc(t->clients, cap * sizeof(*p));
        if (!p)
            return -ENOMEM;
        t->clients = p;
        t->cap_clients = cap;
    }
    if ((uint64_t)(t->n_clients + 1) * 2 > t->hash_mask + 1 &&
        px_sess_rehash(t, (t->hash_mask + 1) * 2) < 0)
        return -ENOMEM;
    px_sclient *c = &t->clients[t->n_clients];
    memset(c, 0, sizeof(*c));
    c->seqs = malloc(t->max_per_client * sizeof(uint64_t));
    c->results = malloc(t->max_per_client * sizeof(int32_t));
    c->gaps = malloc(t->max_per_client * sizeof(uint64_t));
    if (!c->seqs || !c->results || !c->gaps) {
        free(c->seqs);
        free(c->results);
        free(c->gaps);
        return -ENOMEM;
    }
    c->client_id = id;
    int32_t i = (int32_t)t->n_clients++;
    uint32_t pos = px_sess_hash(id, t->hash_mask);
    while (t->hash[pos] >= 0)
        pos = (pos + 1) & t->hash_mask;
    t->hash[pos] = i;
    px_lru_append(t, i);
    return i;
}

static void px_sess_raise_floor(px_sclient *c, uint64_t floor)
{
    if (floor <= c->floor)
        return;
    c->floor = floor;
    uint32_t k = 0;
    while (k < c->n && c->seqs[k] < floor)
        k++;
    if (k) {
        memmove(c->seqs, c->seqs + k, (c->n - k) * sizeof(uint64_t));
        memmove(c->results, c->results + k, (c->n - k) * sizeof(int32_t));
        c->n -= k;
    }
    k = 0;
    while (k < c->n_gaps && c->gaps[k] < floor)
        k++;
    if (k) {
        memmove(c->gaps, c->gaps + k, (c->n_gaps - k) * sizeof(uint64_t));
        c->n_gaps -= k;
    }
}

static void px_gap_remove(px_sclient *c, uint64_t seq)
{
    int64_t k = px_seq_search(c->gaps, c->n_gaps, seq);
    if (k < 0)
        return;
    memmove(c->gaps + k, c->gaps + k + 1,
            (c->n_gaps - (uint32_t)k - 1) * sizeof(uint64_t));
    c->n_gaps--;
}

/* Drop the oldest result for space: its seq joins the applied region
 * below `high`; seqs between the old high and it were not applied (the
 * results are sorted and hold every applied seq above high), so they
 * become gaps.  Gaps beyond max_per_client forget the lowest ones. */
static void px_sess_drop_oldest(px_sclient *c, uint32_t max_gaps)
{
    uint64_t seq = c->seqs[0];
    memmove(c->seqs, c->seqs + 1, (c->n - 1) * sizeof(uint64_t));
    memmove(c->results, c->results + 1, (c->n - 1) * sizeof(int32_t));
    c->n--;
    if (seq <= c->high)
        return;
    uint64_t from = c->high + 1 > c->floor ? c->high + 1 : c->floor;
    if (seq - from > max_gaps)
        from = seq - max_gaps;
    for (uint64_t g = from; g < seq; g++) {
        if (c->n_gaps == max_gaps) {
            c->floor = c->gaps[0] + 1;
            memmove(c->gaps, c->gaps + 1, (c->n_gaps - 1) * sizeof(uint64_t));
            c->n_gaps--;
        }
        c->gaps[c->n_gaps++] = g;
    }
    if (from > c->floor && from > c->high + 1)
        c->floor = from; /* seqs skipped above max_gaps: forgotten */
    c->high = seq;
}

int kv_sessions_record(kv_sessions *t, const px_request *req, int32_t result,
                       uint64_t slot)
{
    if (!t || !req)
        return -EINVAL;
    int32_t i = px_sess_find(t, req->client_id);
    if (i < 0 && (i = px_sess_new_client(t, req->client_id)) < 0)
        return i;
    px_sclient *c = &t->clients[i];
    px_sess_raise_floor(c, req->ack_seq);
    bool applied_before = req->seq <= c->high &&
        px_seq_search(c->gaps, c->n_gaps, req->seq) < 0;
    if (req->seq >= c->floor && !applied_before) {
        px_gap_remove(c, req->seq);
        if (px_sess_search(c, req->seq) < 0) {
            if (c->n == t->max_per_client)
                px_sess_drop_oldest(c, t->max_per_client);
            int64_t k = px_sess_search(c, req->seq);
            uint32_t at = (uint32_t)(-k - 1);
            memmove(c->seqs + at + 1, c->seqs + at,
                    (c->n - at) * sizeof(uint64_t));
            memmove(c->results + at + 1, c->results + at,
                    (c->n - at) * sizeof(int32_t));
            c->seqs[at] = req->seq;
            c->results[at] = result;
            c->n++;
        }
    }
    c->last_slot = slot;
    px_lru_unlink(t, i);
    px_lru_append(t, i);
    return 0;
}

/* ------------------------------------------------------------- encoding */

static void px_w32(uint8_t *p, uint32_t v)
{
    for (int k = 0; k < 4; k++)
        p[k] = (uint8_t)(v >> (8 * k));
}

static void px_w64(uint8_t *p, uint64_t v)
{
    for (int k = 0; k < 8; k++)
        p[k] = (uint8_t)(v >> (8 * k));
}

static uint32_t px_r32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int k = 0; k < 4; k++)
        v |= (uint32_t)p[k] << (8 * k);
    return v;
}

static uint64_t px_r64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int k = 0; k < 8; k++)
        v |= (uint64_t)p[k] << (8 * k);
    return v;
}

int64_t kv_sessions_encode(const kv_sessions *t, uint8_t *buf, uint64_t cap)
{
    if (!t)
        return -EINVAL;
    uint64_t need = 12;
    for (uint32_t i = 0; i < t->n_clients; i++)
        need += 40 + 12 * (uint64_t)t->clients[i].n +
                8 * (uint64_t)t->clients[i].n_gaps;
    if (cap == 0)
        return (int64_t)need;
    if (!buf || cap < need)
        return -ENOSPC;
    uint8_t *p = buf;
    px_w32(p, PX_SESS_MAGIC);
    px_w32(p + 4, PX_SESS_VERSION);
    px_w32(p + 8, t->n_clients);
    p += 12;
    for (int32_t i = t->lru_head; i >= 0; i = t->clients[i].next) {
        const px_sclient *c = &t->clients[i];
        px_w64(p, c->client_id);
        px_w64(p + 8, c->floor);
        px_w64(p + 16, c->high);
        px_w64(p + 24, c->last_slot);
        px_w32(p + 32, c->n);
        px_w32(p + 36, c->n_gaps);
        p += 40;
        for (uint32_t k = 0; k < c->n; k++, p += 12) {
            px_w64(p, c->seqs[k]);
            px_w32(p + 8, (uint32_t)c->results[k]);
        }
        for (uint32_t k = 0; k < c->n_gaps; k++, p += 8)
            px_w64(p, c->gaps[k]);
    }
    return (int64_t)need;
}

int kv_sessions_decode(kv_sessions *t, const uint8_t *buf, uint64_t len)
{
    if (!t || (!buf && len))
        return -EINVAL;
    if (len < 12 || px_r32(buf) != PX_SESS_MAGIC ||
        px_r32(buf + 4) != PX_SESS_VERSION)
        return -EINVAL;
    uint32_t count = px_r32(buf + 8);
    if (count > t->max_clients)
        return -EINVAL;
    kv_sessions *n = kv_sessions_create(t->max_clients, t->max_per_client);
    if (!n)
        return -ENOMEM;
    int rc = -EINVAL;
    uint64_t off = 12;
    for (uint32_t i = 0; i < count; i++) {
        if (len - off < 40)
            goto free_new;
        uint64_t id = px_r64(buf + off);
        uint64_t floor = px_r64(buf + off + 8);
        uint64_t high = px_r64(buf + off + 16);
        uint64_t last_slot = px_r64(buf + off + 24);
        uint32_t nr = px_r32(buf + off + 32);
        uint32_t ng = px_r32(buf + off + 36);
        off += 40;
        if (nr > t->max_per_client || ng > t->max_per_client ||
            (len - off) / 12 < nr ||
            (len - off - 12 * (uint64_t)nr) / 8 < ng ||
            px_sess_find(n, id) >= 0)
            goto free_new;
        int32_t k = px_sess_new_client(n, id);
        if (k < 0) {
            rc = k;
            goto free_new;
        }
        px_sclient *c = &n->clients[k];
        c->floor = floor;
        c->high = high;
        c->last_slot = last_slot;
        for (uint32_t j = 0; j < nr; j++, off += 12) {
            uint64_t seq = px_r64(buf + off);
            if (seq < floor || (j > 0 && seq <= c->seqs[j - 1]))
                goto free_new;
            c->seqs[j] = seq;
            c->results[j] = (int32_t)px_r32(buf + off + 8);
            c->n = j + 1;
        }
        for (uint32_t j = 0; j < ng; j++, off += 8) {
            uint64_t g = px_r64(buf + off);
            if (g < floor || g > high ||
                (j > 0 && g <= c->gaps[j - 1]) ||
                px_sess_search(c, g) >= 0)
                goto free_new;
            c->gaps[j] = g;
            c->n_gaps = j + 1;
        }
    }
    if (off != len)
        goto free_new;
    px_sess_clear(t);
    *t = *n;
    free(n);
    return 0;

free_new:
    kv_sessions_destroy(n);
    return rc;
}
